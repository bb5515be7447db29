// Process memory figures for reports and `sllm info`.
#pragma once

#include <cstdint>
#include <string>

namespace sllm::memory {

// Peak resident set size (VmHWM in /proc/self/status); 0 where unavailable.
uint64_t peak_rss_bytes();
// Current resident set size (VmRSS); 0 where unavailable.
uint64_t current_rss_bytes();
// Binary units with one decimal: 512 -> "512 B", 12897484 -> "12.3 MiB".
std::string format_bytes(uint64_t bytes);

}  // namespace sllm::memory
