#include "core/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace sllm {

namespace {

// Colour-blind-safe palette (Okabe-Ito), cycled.
constexpr const char* kColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                   "#E69F00", "#56B4E9", "#F0E442", "#000000"};

struct Axis {
  double lo = 0, hi = 1, step = 0;  // step 0: no ticks (degenerate range)
  std::vector<double> ticks;
};

// The 1, 2 or 5 x 10^k step nearest above span/target.
double nice_step(double span, int target) {
  const double raw = span / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw * (1 - 1e-9)) return m * mag;
  return 10 * mag;
}

// Range widened to whole ticks; a zero-width range (one point, a flat line) gets one unit either
// side on its own scale.
Axis make_axis(double lo, double hi, int target) {
  Axis a;
  if (hi == lo) {
    const double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.5;
    lo -= pad;
    hi += pad;
  }
  const double span = hi - lo;
  if (!std::isfinite(span) || span <= 0) {  // overflowing ranges: label the ends only
    a.lo = lo;
    a.hi = hi;
    a.ticks = {lo, hi};
    return a;
  }
  a.step = nice_step(span, target);
  a.lo = std::floor(lo / a.step) * a.step;
  a.hi = std::ceil(hi / a.step) * a.step;
  for (double k = std::round(a.lo / a.step); k * a.step <= a.hi + a.step * 1e-9; ++k) {
    double v = k * a.step;
    a.ticks.push_back(std::abs(v) < a.step * 1e-9 ? 0.0 : v);  // no "-0"
    if (a.ticks.size() > 50) break;
  }
  return a;
}

std::string tick_label(double v, double step) {
  const double av = std::abs(v);
  if (av != 0 && (av >= 1e6 || av < 1e-4)) return fmt::format("{:.3g}", v);
  const int decimals = step > 0 ? std::max(0, -static_cast<int>(std::floor(std::log10(step)))) : 3;
  return fmt::format("{:.{}f}", v, std::min(decimals, 6));
}

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters other than tab/newline are not allowed in XML 1.0.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t' || c == '\n') out += c;
    }
  }
  return out;
}

std::string svg_line_chart(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<ChartSeries>& series,
                           int width, int height) {
  width = std::max(width, 240);
  height = std::max(height, 160);
  const double left = 70, right = 20, top = 40, bottom = 50;
  const double pw = width - left - right, ph = height - top - bottom;

  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  size_t n_points = 0;
  for (const auto& s : series)
    for (const auto& [x, y] : s.xy) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x);
      y0 = std::min(y0, y), y1 = std::max(y1, y);
      ++n_points;
    }

  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n",
      width, height);
  out +=
      fmt::format("<text x=\"{:.1f}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
                  width / 2.0, xml_escape(title));
  auto draw_axes = [&] {
    out += fmt::format(
        "<g stroke=\"#333\" stroke-width=\"1\"><line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" "
        "y2=\"{1:.1f}\"/><line x1=\"{0:.1f}\" y1=\"{3:.1f}\" x2=\"{0:.1f}\" y2=\"{1:.1f}\"/></g>\n",
        left, top + ph, left + pw, top);
  };
  out += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                     left + pw / 2, height - 10.0, xml_escape(x_label));
  out += fmt::format(
      "<text x=\"16\" y=\"{0:.1f}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0:.1f})\">"
      "{1}</text>\n",
      top + ph / 2, xml_escape(y_label));

  if (n_points == 0) {
    draw_axes();
    out += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
        left + pw / 2, top + ph / 2);
    return out + "</svg>\n";
  }

  const Axis ax = make_axis(x0, x1, 8), ay = make_axis(y0, y1, 5);
  auto px = [&](double x) { return left + (x - ax.lo) / (ax.hi - ax.lo) * pw; };
  auto py = [&](double y) { return top + ph - (y - ay.lo) / (ay.hi - ay.lo) * ph; };

  // Ticks and light grid lines.
  out += "<g font-size=\"11\" fill=\"#333\">\n";
  for (double t : ax.ticks)
    out += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{0:.1f}\" y=\"{3:.1f}\" text-anchor=\"middle\">{4}</text>\n",
        px(t), top, top + ph, top + ph + 16, xml_escape(tick_label(t, ax.step)));
  for (double t : ay.ticks)
    out += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3:.1f}\" y=\"{4:.1f}\" text-anchor=\"end\">{5}</text>\n",
        left, py(t), left + pw, left - 6, py(t) + 4, xml_escape(tick_label(t, ay.step)));
  out += "</g>\n";
  draw_axes();  // over the grid

  // Series: a polyline, or a dot for a series with a single point.
  for (size_t i = 0; i < series.size(); ++i) {
    const char* color = kColors[i % std::size(kColors)];
    std::string pts;
    size_t n = 0;
    double last_x = 0, last_y = 0;
    for (const auto& [x, y] : series[i].xy) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      last_x = px(x), last_y = py(y);
      pts += fmt::format("{}{:.1f},{:.1f}", n++ ? " " : "", last_x, last_y);
    }
    if (n == 1)
      out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", last_x,
                         last_y, color);
    else if (n > 1)
      out += fmt::format(
          "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n", color,
          pts);
  }

  // Legend, top right inside the plot.
  for (size_t i = 0; i < series.size(); ++i) {
    const double ly = top + 14 + 16.0 * static_cast<double>(i);
    const double lx = left + pw - 150;
    out += fmt::format(
        "<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{2:.1f}\" y2=\"{1:.1f}\" stroke=\"{3}\" "
        "stroke-width=\"2\"/><text x=\"{4:.1f}\" y=\"{5:.1f}\">{6}</text>\n",
        lx, ly, lx + 20, kColors[i % std::size(kColors)], lx + 26, ly + 4,
        xml_escape(series[i].label));
  }
  return out + "</svg>\n";
}

}  // namespace sllm
