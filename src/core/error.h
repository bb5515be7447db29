// Errors: one exception type (sllm::Error, include/sllm/error.h) carrying a user-facing message
// and the source location.
// Inside the code throw through SLLM_CHECK / SLLM_FAIL; catch once at the edge (CLI, server).
#pragma once

#include <fmt/format.h>

#include <string>

#include "sllm/error.h"  // the Error class is part of the public API

namespace sllm {

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
