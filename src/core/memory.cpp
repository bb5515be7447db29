#include "core/memory.h"

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace sllm::memory {
namespace {

// Reads "Field:   1234 kB" from /proc/self/status.
uint64_t status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  const std::string prefix = std::string(field) + ":";
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, prefix.size(), prefix) == 0)
      return std::strtoull(line.c_str() + prefix.size(), nullptr, 10);
  }
  return 0;
}

}  // namespace

uint64_t peak_rss_bytes() { return status_kib("VmHWM") * 1024; }
uint64_t current_rss_bytes() { return status_kib("VmRSS") * 1024; }

std::string format_bytes(uint64_t bytes) {
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes) / 1024;
  size_t u = 0;
  // Step up while the value would print as 1024.0 or more.
  while (v >= 1023.95 && u + 1 < std::size(units)) v /= 1024, ++u;
  return fmt::format("{:.1f} {}", v, units[u]);
}

}  // namespace sllm::memory
