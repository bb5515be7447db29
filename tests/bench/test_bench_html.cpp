// The HTML report: escaping, which charts a result gets, and the rendered page in headless
// Chromium (every chart drawn, the screenshot not blank).
#include <gtest/gtest.h>

#include <cstdio>
#include <regex>

#include "apps/bench_html.h"
#include "bench_test_util.h"
#include "core/svg_chart.h"
#include "sllm/error.h"

namespace sllm::apps {
namespace {

using nlohmann::json;

json sample(const char* name) {
  return json::parse(testing::read_text(std::string(SLLM_BENCH_TEST_DIR) + "/data/" + name));
}

TEST(BenchHtml, EscapesEveryString) {
  EXPECT_EQ(xml_escape("<a href=\"x\">'&'</a>\x01"),
            "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;");
  const std::string h = render_bench_html(sample("offline_result.json"));
  // Names and prompts hold markup and "</script>": none of it may reach the page as markup.
  EXPECT_EQ(h.find("<b>x</b>"), std::string::npos);
  EXPECT_EQ(h.find("<script>alert"), std::string::npos);
  EXPECT_EQ(h.find("<b>bold</b>"), std::string::npos);
  EXPECT_NE(h.find("smollm2-135m-nf4&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;"), std::string::npos);
  EXPECT_NE(h.find("SmolLM2-135M &lt;fp32&gt; &amp; &quot;friends&quot;"), std::string::npos);
  // Exactly the three script elements of the page (data, Chart.js, charts) open and close.
  size_t opens = 0, closes = 0;
  for (size_t p = 0; (p = h.find("<script", p)) != std::string::npos; ++p) ++opens;
  for (size_t p = 0; (p = h.find("</script", p)) != std::string::npos; ++p) ++closes;
  EXPECT_EQ(opens, 3u);
  EXPECT_EQ(closes, 3u);
  EXPECT_EQ(h.find("<script src"), std::string::npos) << "the report must need no network";
}

TEST(BenchHtml, ChartsFollowWhatTheResultHolds) {
  EXPECT_EQ(bench_html_charts(sample("offline_result.json")),
            (std::vector<std::string>{"latency", "tok-s", "sweep-throughput", "sweep-latency",
                                      "quality-speed"}));
  EXPECT_EQ(bench_html_charts(sample("load_result.json")),
            (std::vector<std::string>{"load-latency", "load-throughput"}));
  // Only what is there: a model with latency percentiles and nothing else.
  const json thin = {{"kind", "offline"},
                     {"models", {{{"name", "a"}, {"latency_ms", {{"p50", 3.0}}}}}}};
  EXPECT_EQ(bench_html_charts(thin), (std::vector<std::string>{"latency"}));
  const std::string h = render_bench_html(thin);
  EXPECT_NE(h.find("data-charts-expected=\"1\""), std::string::npos);
  EXPECT_NE(h.find("<canvas id=\"chart-latency\""), std::string::npos);
  EXPECT_NO_THROW(render_bench_html({{"kind", "load"}}));
}

TEST(BenchHtml, ClearErrors) {
  EXPECT_THROW(render_bench_html(json::array()), sllm::Error);
  EXPECT_THROW(render_bench_html({{"kind", "other"}}), sllm::Error);
  try {
    render_bench_html(sample("load_result.json"), "/nonexistent/chart.js");
    FAIL() << "no error";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("libjs-chart.js"), std::string::npos) << e.what();
  }
}

// Renders `result` into a file and loads it in headless Chromium: the DOM after the scripts ran
// must say every chart was drawn, and the screenshot must not be blank.
void check_in_browser(const json& result, const std::string& name) {
  const std::string dir = testing::temp_dir();
  const std::string html = dir + "/" + name + ".html", png = dir + "/" + name + ".png";
  {
    FILE* f = std::fopen(html.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    const std::string page = render_bench_html(result);
    std::fwrite(page.data(), 1, page.size(), f);
    std::fclose(f);
  }
  const std::vector<std::string> common = {SLLM_CHROMIUM,
                                           "--headless",
                                           "--no-sandbox",
                                           "--disable-gpu",
                                           "--user-data-dir=" + dir + "/profile",
                                           "--virtual-time-budget=5000"};
  auto args = common;
  args.insert(args.end(), {"--dump-dom", "file://" + html});
  std::string dom;
  ASSERT_EQ(testing::run_command(args, &dom, 120), 0) << "chromium failed";
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom, m, std::regex("<body[^>]*>"))) << dom.substr(0, 2000);
  const std::string body = m.str(0);
  const auto charts = bench_html_charts(result);
  ASSERT_FALSE(charts.empty());
  EXPECT_EQ(body.find("data-charts-error"), std::string::npos) << body;
  EXPECT_NE(body.find("data-charts-rendered=\"" + std::to_string(charts.size()) + "\""),
            std::string::npos)
      << body;
  for (const auto& id : charts)
    EXPECT_NE(dom.find("<canvas id=\"chart-" + id + "\""), std::string::npos) << id;
  // One latency box per model that has per-request figures.
  int64_t with_requests = 0;
  for (const auto& mod : result.value("models", json::array()))
    with_requests += mod.contains("requests") && !mod["requests"].empty();
  if (with_requests > 0) {
    EXPECT_NE(body.find("data-latency-boxes=\"" + std::to_string(with_requests) + "\""),
              std::string::npos)
        << body;
  }

  args = common;
  args.insert(args.end(), {"--screenshot=" + png, "--window-size=1280,1600", "file://" + html});
  std::string ignored;
  ASSERT_EQ(testing::run_command(args, &ignored, 120), 0) << "chromium screenshot failed";
  const auto img = testing::decode_png(testing::read_text(png));
  EXPECT_EQ(img.width, 1280);
  int64_t inked = 0;
  for (size_t i = 0; i < img.rgba.size(); i += 4)
    if (img.rgba[i] < 200 || img.rgba[i + 1] < 200 || img.rgba[i + 2] < 200) ++inked;
  // Text, axes, bars and lines: well above a blank page (0) and far below a solid fill.
  const double share = double(inked) / (double(img.width) * img.height);
  EXPECT_GT(share, 0.01) << inked << " non-white pixels";
  EXPECT_LT(share, 0.9);
  for (const auto& p : {html, png}) std::remove(p.c_str());
}

TEST(BenchHtml, OfflineReportRendersInChromium) {
  check_in_browser(sample("offline_result.json"), "offline");
}

TEST(BenchHtml, LoadReportRendersInChromium) {
  check_in_browser(sample("load_result.json"), "load");
}

}  // namespace
}  // namespace sllm::apps
