// Line charts as standalone SVG (no dependencies): the loss curves in training reports.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace sllm {

struct ChartSeries {
  std::string label;                          // legend text
  std::vector<std::pair<double, double>> xy;  // points in x order; NaN/inf values are skipped
};

// Text safe in XML and HTML content and attribute values (& < > " ' escaped; control characters
// other than tab and newline, which XML 1.0 forbids, dropped).
std::string xml_escape(const std::string& s);

// A width x height SVG with axes, ticks at round numbers, a legend and one polyline per series.
std::string svg_line_chart(const std::string& title, const std::string& x_label,
                           const std::string& y_label, const std::vector<ChartSeries>& series,
                           int width = 720, int height = 400);

}  // namespace sllm
