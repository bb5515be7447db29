#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

#include "core/log.h"

namespace sllm {
namespace {

std::string hms(double s) {
  if (!(s >= 0) || s > 359999) return "--:--";  // NaN, negative or absurd ETAs
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

std::string rate_text(double r) {
  if (r >= 100) return fmt::format("{:.0f}/s", r);
  if (r >= 10) return fmt::format("{:.1f}/s", r);
  return fmt::format("{:.2f}/s", r);
}

}  // namespace

ProgressBar::ProgressBar(std::string label, int64_t total)
    : ProgressBar(std::move(label), total, stderr, isatty(fileno(stderr)) == 1) {
  enabled_ = log::enabled(log::Level::info);
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::FILE* out, bool tty)
    : label_(std::move(label)), total_(total), out_(out), tty_(tty), enabled_(true) {}

ProgressBar::~ProgressBar() {
  // Leave the terminal on a fresh line if the loop ended early (an exception, a break).
  if (tty_ && drawn_ && !finished_ && enabled_) {
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

std::string ProgressBar::line() const {
  const double el = timer_.seconds();
  const double rate = el > 0 ? static_cast<double>(done_) / el : 0.0;
  std::string s = label_;
  if (total_ > 0) {
    const double pct =
        100.0 * static_cast<double>(std::min(done_, total_)) / static_cast<double>(total_);
    s += fmt::format(" {:3.0f}% {}/{}", pct, done_, total_);
  } else {
    s += fmt::format(" {}", done_);
  }
  s += fmt::format(" {} elapsed {}", rate_text(rate), hms(el));
  if (total_ > 0 && done_ < total_)
    s += " eta " +
         (rate > 0 ? hms(static_cast<double>(total_ - done_) / rate) : std::string("--:--"));
  if (!extra_.empty()) s += " " + extra_;
  return s;
}

void ProgressBar::update(int64_t done, std::string_view extra) {
  if (finished_) return;
  done_ = done;
  extra_ = extra;
  if (!enabled_) return;
  const double now = timer_.seconds();
  if (tty_) {
    if (last_draw_s_ < 0 || now - last_draw_s_ >= 0.1) draw(false);
    return;
  }
  if (total_ > 0) {
    const int decile = static_cast<int>(10 * std::min(done_, total_) / total_);
    if (decile > last_decile_ && decile < 10) {  // 100% is printed by finish()
      last_decile_ = decile;
      draw(false);
    }
  } else if (now - std::max(last_draw_s_, 0.0) >= 30) {
    draw(false);
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  if (enabled_) draw(true);
  finished_ = true;
}

void ProgressBar::draw(bool final) {
  last_draw_s_ = timer_.seconds();
  drawn_ = true;
  std::string s = line();
  if (tty_) {
    if (total_ > 0) {  // a 20-cell bar after the label
      const auto cells = static_cast<size_t>(20 * std::min(done_, total_) / total_);
      const std::string bar = "[" + std::string(cells, '#') + std::string(20 - cells, '.') + "]";
      s.insert(label_.size(), " " + bar);
    }
    s = "\r" + s + "\x1b[K";  // clear what a longer previous line left behind
    if (final) s += "\n";
  } else {
    s += "\n";
  }
  std::fwrite(s.data(), 1, s.size(), out_);
  std::fflush(out_);
}

}  // namespace sllm
