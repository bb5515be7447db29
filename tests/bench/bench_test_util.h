// Helpers of the bench tests: the fake LLM server as a child process, running a command and
// decoding a PNG screenshot.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sllm::testing {

// fake_llm_server.py on a free loopback port; stopped (SIGTERM, waited for) on destruction.
class FakeServer {
 public:
  explicit FakeServer(const std::vector<std::string>& args = {});
  ~FakeServer();
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

// A loopback port nothing listens on (bound, then released).
int unused_port();

// Runs argv (no shell) with stdout captured; returns the exit status (-1 when it did not exit).
int run_command(const std::vector<std::string>& argv, std::string* out, int timeout_s);

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgba;  // width * height * 4
};
// 8-bit RGB / RGBA PNG (what Chromium writes) -> pixels; throws std::runtime_error otherwise.
Image decode_png(const std::string& bytes);

std::string read_text(const std::string& path);
std::string temp_dir();  // a fresh directory under $TMPDIR

}  // namespace sllm::testing
