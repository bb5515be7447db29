// Logging facade: spdlog stays behind this header's implementation file.
#pragma once

#include <fmt/format.h>

#include <string>
#include <string_view>

namespace sllm::log {

enum class Level { trace, debug, info, warn, error, off };

// Parses "trace|debug|info|warn|error|off"; throws sllm::Error on anything else.
Level parse_level(std::string_view name);
// Sets the level; the SLLM_LOG_LEVEL environment variable is read by init().
void set_level(Level level);
void init();  // stderr sink, pattern, level from SLLM_LOG_LEVEL (default info)
bool enabled(Level level);
void write(Level level, std::string_view message);

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::debug)) write(Level::debug, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::info)) write(Level::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::warn)) write(Level::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::error)) write(Level::error, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace sllm::log
