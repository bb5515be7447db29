// Errors: one exception type carrying a user-facing message and the source location.
// Inside the code throw through SLLM_CHECK / SLLM_FAIL; catch once at the edge (CLI, server).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace sllm {

class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* file, int line)
      : std::runtime_error(std::move(message)), file_(file), line_(line) {}
  explicit Error(std::string message) : std::runtime_error(std::move(message)) {}

  // Where the error was raised, for debug logs ("src/io/gguf.cpp:120"); empty if unknown.
  std::string where() const { return file_ ? fmt::format("{}:{}", file_, line_) : std::string(); }

 private:
  const char* file_ = nullptr;
  int line_ = 0;
};

namespace detail {
[[noreturn]] inline void fail(const char* file, int line, std::string message) {
  throw Error(std::move(message), file, line);
}
}  // namespace detail

}  // namespace sllm

// SLLM_CHECK(cond, "fmt message {}", args...): throw sllm::Error with the message if !cond.
#define SLLM_CHECK(cond, ...)                                                        \
  do {                                                                               \
    if (!(cond)) ::sllm::detail::fail(__FILE__, __LINE__, fmt::format(__VA_ARGS__)); \
  } while (0)

#define SLLM_FAIL(...) ::sllm::detail::fail(__FILE__, __LINE__, fmt::format(__VA_ARGS__))
