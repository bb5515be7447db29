// Progress of a long loop on stderr. On a terminal: one line redrawn in place with '\r'
// (at most every 100 ms). Otherwise (logs, CI): a plain line about every 10% and at the end.
// Stays silent when the log level is above info.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "core/timer.h"

namespace sllm {

class ProgressBar {
 public:
  // total <= 0: unknown total (no percent / ETA; plain mode prints at most every 30 s).
  ProgressBar(std::string label, int64_t total);
  // For tests: draw to `out`, as if it were a terminal or not; ignores the log level.
  ProgressBar(std::string label, int64_t total, std::FILE* out, bool tty);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // done: items completed so far; extra: short text shown after the figures ("loss 2.31").
  void update(int64_t done, std::string_view extra = "");
  // Draws the final state and ends the line; idempotent.
  void finish();

  // "label  45% 450/1000 12.3/s elapsed 0:36 eta 0:44 extra" (without bar or '\r').
  std::string line() const;

 private:
  void draw(bool final);

  std::string label_;
  int64_t total_;
  int64_t done_ = 0;
  std::string extra_;
  std::FILE* out_;
  bool tty_, enabled_;
  bool finished_ = false, drawn_ = false;
  int last_decile_ = 0;      // plain mode: last 10% step printed
  double last_draw_s_ = -1;  // time of the last draw, for throttling
  Timer timer_;
};

}  // namespace sllm
