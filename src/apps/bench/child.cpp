#include "apps/bench/child.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "core/error.h"

namespace sllm::apps::bench {

namespace {
std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }
}  // namespace

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

bool interrupted() { return g_interrupted.load(); }

Child::Child(std::string name) : name_(std::move(name)) {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  SLLM_CHECK(!ec, "cannot find the sllm binary (/proc/self/exe): {}", ec.message());
  int in[2], out[2];
  SLLM_CHECK(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0,
             "cannot create pipes for the worker of '{}': {}", name_, std::strerror(errno));
  const std::string exe_s = exe.string();
  // Everything the child needs is built before fork: only async-signal-safe calls after it.
  std::vector<std::string> env_s = {"SLLM_BENCH_WORKER=1"};
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "SLLM_BENCH_WORKER=", 18) != 0) env_s.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  char arg1[] = "bench";
  char* argv[] = {const_cast<char*>(exe_s.c_str()), arg1, nullptr};
  pid_ = fork();
  SLLM_CHECK(pid_ >= 0, "cannot start the worker of '{}': {}", name_, std::strerror(errno));
  if (pid_ == 0) {
    // Its own process group: a Ctrl-C reaches the driver, which ends the workers itself.
    setpgid(0, 0);
    dup2(in[0], 0);
    dup2(out[1], 1);
    execve(exe_s.c_str(), argv, envp.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  to_child_ = in[1];
  from_child_ = out[0];
}

Child::~Child() { kill(); }

void Child::kill() {
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
  to_child_ = from_child_ = -1;
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
}

std::string Child::describe_exit() {
  int status = 0;
  std::string what = "the worker stopped answering";
  if (pid_ > 0 && waitpid(pid_, &status, 0) == pid_) {
    if (WIFSIGNALED(status))
      what = fmt::format("the worker crashed (signal {}: {})", WTERMSIG(status),
                         strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status))
      what = fmt::format("the worker exited with status {}", WEXITSTATUS(status));
    pid_ = -1;
  }
  kill();
  return what;
}

nlohmann::json Child::call(const nlohmann::json& req) {
  if (pid_ <= 0) throw WorkerDied("the worker is not running");
  const std::string line =
      req.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  for (size_t off = 0; off < line.size();) {
    const ssize_t n = write(to_child_, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) {
      if (interrupted()) throw Interrupted();
      continue;
    }
    if (n <= 0) throw WorkerDied(describe_exit());
    off += static_cast<size_t>(n);
  }
  while (true) {
    const auto nl = buf_.find('\n');
    if (nl != std::string::npos) {
      const std::string reply = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(reply);
      } catch (const nlohmann::json::exception&) {
        kill();
        throw WorkerDied("the worker answered something that is not JSON: " + reply.substr(0, 80));
      }
      if (!j.value("ok", false)) SLLM_FAIL("{}", j.value("error", std::string("unknown error")));
      return j;
    }
    if (interrupted()) throw Interrupted();
    pollfd p{from_child_, POLLIN, 0};
    const int r = poll(&p, 1, 200);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char chunk[65536];
    const ssize_t n = read(from_child_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw WorkerDied(describe_exit());
    buf_.append(chunk, static_cast<size_t>(n));
  }
}

}  // namespace sllm::apps::bench
