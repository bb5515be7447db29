// A worker process: the sllm binary re-executed with SLLM_BENCH_WORKER=1, one JSON request per
// line on its stdin, one JSON reply per line on its stdout. Its stderr is ours (logs).
#pragma once

#include <nlohmann/json.hpp>

#include <sys/types.h>
#include <stdexcept>
#include <string>

namespace sllm::apps::bench {

// The worker ended (crash, kill, exit) or answered garbage.
struct WorkerDied : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// SIGINT arrived while waiting.
struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

// SIGINT sets a flag (checked while waiting on workers); SIGPIPE is ignored.
void install_signal_handlers();
bool interrupted();

class Child {
 public:
  explicit Child(std::string name);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Sends req and waits for the reply. A reply {"ok": false, "error": ...} is thrown as
  // sllm::Error; a dead worker as WorkerDied; SIGINT as Interrupted.
  nlohmann::json call(const nlohmann::json& req);
  void kill();  // SIGKILL and reap; idempotent
  bool alive() const { return pid_ > 0; }

 private:
  std::string describe_exit();

  std::string name_;
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  std::string buf_;
};

}  // namespace sllm::apps::bench
