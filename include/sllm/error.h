// sllm::Error: the one exception type the library throws. Its message is meant for a person:
// what went wrong, where (file, key, line), and what to do.
#pragma once

#include <stdexcept>
#include <string>

namespace sllm {

class Error : public std::runtime_error {
 public:
  Error(std::string message, const char* file, int line)
      : std::runtime_error(std::move(message)), file_(file), line_(line) {}
  explicit Error(std::string message) : std::runtime_error(std::move(message)) {}

  // Where the error was raised, for debug logs ("src/io/gguf.cpp:120"); empty if unknown.
  std::string where() const {
    return file_ ? std::string(file_) + ":" + std::to_string(line_) : std::string();
  }

 private:
  const char* file_ = nullptr;
  int line_ = 0;
};

}  // namespace sllm
