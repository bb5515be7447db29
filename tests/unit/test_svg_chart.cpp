// SVG line chart tests: structure, round ticks, escaping and degenerate inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <regex>

#include "core/svg_chart.h"

using namespace sllm;

namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// Labels of the tick texts (text-anchor middle below the x axis, end left of the y axis).
std::vector<std::string> tick_labels(const std::string& svg, const std::string& anchor) {
  std::vector<std::string> out;
  std::regex re("<text x=\"[^\"]*\" y=\"[^\"]*\" text-anchor=\"" + anchor + "\">([^<]*)</text>");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
       ++it)
    out.push_back((*it)[1]);
  return out;
}

// Every tick is an integer multiple of one 1/2/5 x 10^k step.
void expect_round(const std::vector<std::string>& labels) {
  ASSERT_GE(labels.size(), 2u);
  std::vector<double> v;
  for (const auto& l : labels) v.push_back(std::stod(l));
  const double step = v[1] - v[0];
  ASSERT_GT(step, 0);
  const double mant = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  EXPECT_TRUE(std::abs(mant - 1) < 1e-6 || std::abs(mant - 2) < 1e-6 || std::abs(mant - 5) < 1e-6)
      << step;
  for (double x : v) EXPECT_NEAR(x / step, std::round(x / step), 1e-6) << x;
}

bool has_bad_number(const std::string& svg) {
  return svg.find("nan") != std::string::npos || svg.find("inf") != std::string::npos;
}

}  // namespace

TEST(SvgChart, TwoSeriesWithLegendAndRoundTicks) {
  ChartSeries train{"train loss", {}}, eval{"eval loss", {}};
  for (int i = 0; i <= 100; ++i) train.xy.push_back({i, 3.0 / (1 + 0.1 * i) + 0.13});
  for (int i = 0; i <= 100; i += 25) eval.xy.push_back({i, 3.2 / (1 + 0.1 * i) + 0.2});
  auto svg = svg_line_chart("Loss", "step", "loss", {train, eval});
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"400\"", 0),
            0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(count(svg, "<polyline"), 2u);
  EXPECT_NE(svg.find(">train loss</text>"), std::string::npos);
  EXPECT_NE(svg.find(">eval loss</text>"), std::string::npos);
  EXPECT_NE(svg.find(">Loss</text>"), std::string::npos);
  EXPECT_FALSE(has_bad_number(svg));

  auto xs = tick_labels(svg, "middle");
  // x: 0..100 in steps of 20 (the axis title shares the anchor but is not numeric: drop it).
  xs.erase(std::remove_if(xs.begin(), xs.end(),
                          [](const std::string& s) { return s.empty() || !std::isdigit(s[0]); }),
           xs.end());
  EXPECT_EQ(xs, (std::vector<std::string>{"0", "20", "40", "60", "80", "100"}));
  auto ys = tick_labels(svg, "end");
  expect_round(ys);
  EXPECT_EQ(ys.front(), "0");
  EXPECT_EQ(ys.back(), "4");
}

TEST(SvgChart, EscapesLabels) {
  auto svg = svg_line_chart("a<b & \"c\"", "x'", "y>", {{"<script>", {{0, 1}, {1, 2}}}});
  EXPECT_NE(svg.find("a&lt;b &amp; &quot;c&quot;"), std::string::npos);
  EXPECT_NE(svg.find("x&apos;"), std::string::npos);
  EXPECT_NE(svg.find("y&gt;"), std::string::npos);
  EXPECT_NE(svg.find("&lt;script&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("<script>"), std::string::npos);
  EXPECT_EQ(svg.find("<b"), std::string::npos);
}

TEST(SvgChart, SkipsNonFinitePoints) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  auto svg = svg_line_chart("t", "x", "y", {{"s", {{0, 1}, {1, nan}, {2, inf}, {inf, 3}, {3, 2}}}});
  EXPECT_FALSE(has_bad_number(svg));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(svg, m, std::regex("points=\"([^\"]*)\"")));
  EXPECT_EQ(count(m[1], ","), 2u);  // (0,1) and (3,2)
  expect_round(tick_labels(svg, "end"));
}

TEST(SvgChart, SinglePointAndFlatLine) {
  auto one = svg_line_chart("t", "x", "y", {{"s", {{5, 2.5}}}});
  EXPECT_FALSE(has_bad_number(one));
  EXPECT_EQ(count(one, "<circle"), 1u);
  EXPECT_EQ(count(one, "<polyline"), 0u);

  auto flat = svg_line_chart("t", "x", "y", {{"s", {{0, 0}, {1, 0}, {2, 0}}}});
  EXPECT_FALSE(has_bad_number(flat));
  EXPECT_EQ(count(flat, "<polyline"), 1u);
  expect_round(tick_labels(flat, "end"));
}

TEST(SvgChart, EmptyDrawsAxesAndNoData) {
  for (const auto& series : {std::vector<ChartSeries>{}, std::vector<ChartSeries>{{"s", {}}},
                             std::vector<ChartSeries>{{"s", {{std::nan(""), 1}}}}}) {
    auto svg = svg_line_chart("t", "x", "y", series, 100, 50);  // too small: clamped
    EXPECT_NE(svg.find(">no data</text>"), std::string::npos);
    EXPECT_EQ(count(svg, "<line"), 2u);  // the two axes
    EXPECT_EQ(count(svg, "<polyline"), 0u);
    EXPECT_NE(svg.find("</svg>"), std::string::npos);
    EXPECT_FALSE(has_bad_number(svg));
  }
}
