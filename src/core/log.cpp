#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include "core/error.h"

namespace sllm::log {
namespace {
spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::trace:
      return spdlog::level::trace;
    case Level::debug:
      return spdlog::level::debug;
    case Level::info:
      return spdlog::level::info;
    case Level::warn:
      return spdlog::level::warn;
    case Level::error:
      return spdlog::level::err;
    case Level::off:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> l = [] {
    auto sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    auto lg = std::make_shared<spdlog::logger>("sllm", sink);
    lg->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    lg->set_level(spdlog::level::info);
    return lg;
  }();
  return *l;
}
}  // namespace

Level parse_level(std::string_view name) {
  if (name == "trace") return Level::trace;
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn" || name == "warning") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "off") return Level::off;
  SLLM_FAIL("unknown log level '{}': use trace, debug, info, warn, error or off", name);
}

void set_level(Level level) { logger().set_level(to_spd(level)); }

void init() {
  if (const char* env = std::getenv("SLLM_LOG_LEVEL"); env && *env) set_level(parse_level(env));
}

bool enabled(Level level) { return logger().should_log(to_spd(level)); }

void write(Level level, std::string_view message) { logger().log(to_spd(level), message); }

}  // namespace sllm::log
