// The load mode against fake_llm_server.py: counts, latencies consistent with the fake's delays
// (loose bounds: the machine may be busy), usage vs chunk counting, and every failure mode.
#include <gtest/gtest.h>

#include <cstdio>

#include "apps/bench_load.h"
#include "bench_test_util.h"
#include "core/config.h"
#include "sllm/error.h"

namespace sllm::apps {
namespace {

using nlohmann::json;
using testing::FakeServer;

// The fake answers 8 tokens: first after 50 ms, then one every 20 ms.
LoadSettings settings(const FakeServer& f, std::vector<int> conc = {1, 2}, int n = 4) {
  LoadSettings s;
  s.url = f.url();
  s.concurrency = std::move(conc);
  s.num_prompts = n;
  s.max_tokens = 8;
  s.timeout_s = 30;
  s.ready_timeout_s = 15;
  s.duration_s = 120;
  return s;
}

double stat(const json& run, const char* metric, const char* which) {
  const auto& v = run[metric][which];
  return v.is_number() ? v.get<double>() : -1;
}

// Every level's token count and where it came from.
void expect_tokens(const json& r, const char* from, int64_t tokens) {
  for (const auto& run : r["runs"]) {
    EXPECT_EQ(run["tokens_from"], from);
    EXPECT_EQ(run["output_tokens"], tokens);
  }
}

void expect_all_completed(const json& r, int n) {
  ASSERT_EQ(r["kind"], "load");
  for (const auto& run : r["runs"]) {
    EXPECT_EQ(run["num_requests"], n);
    EXPECT_EQ(run["completed"], n) << run.dump();
    EXPECT_TRUE(run["errors"].empty()) << run.dump();
  }
}

TEST(BenchLoadServer, OpenAIStreamMeasuresTheFakesDelays) {
  FakeServer f;
  const json r = bench_load(settings(f));
  expect_all_completed(r, 4);
  EXPECT_EQ(r["model"], "fake-model");  // from /v1/models
  ASSERT_EQ(r["runs"].size(), 2u);
  EXPECT_EQ(r["runs"][0]["concurrency"], 1);
  EXPECT_EQ(r["runs"][1]["concurrency"], 2);
  for (const auto& run : r["runs"]) {
    EXPECT_EQ(run["tokens_from"], "usage");
    EXPECT_EQ(run["output_tokens"], 32);
    EXPECT_TRUE(run["goodput_req_s"].is_null());  // no SLO given
    // Configured: TTFT 50 ms, 20 ms between tokens, so E2E >= 50 + 7 * 20.
    EXPECT_GE(stat(run, "ttft_ms", "median"), 40);
    EXPECT_LE(stat(run, "ttft_ms", "median"), 2000);
    EXPECT_GE(stat(run, "itl_ms", "median"), 12);
    EXPECT_LE(stat(run, "itl_ms", "median"), 1000);
    EXPECT_GE(stat(run, "tpot_ms", "median"), 12);
    EXPECT_LE(stat(run, "tpot_ms", "median"), 1000);
    EXPECT_GE(stat(run, "e2e_ms", "median"), 170);
    EXPECT_GE(stat(run, "e2e_ms", "p99"), stat(run, "e2e_ms", "median"));
    EXPECT_GE(stat(run, "ttft_ms", "p90"), stat(run, "ttft_ms", "median"));
    EXPECT_GT(run["requests_per_s"].get<double>(), 0);
    EXPECT_NEAR(run["output_tok_s"].get<double>(), 8 * run["requests_per_s"].get<double>(), 1e-6);
  }
}

TEST(BenchLoadServer, CountsChunksWhenTheServerReportsNoUsage) {
  FakeServer plain({"--no-usage"});
  json r = bench_load(settings(plain, {2}));
  expect_all_completed(r, 4);
  expect_tokens(r, "chunks", 32);

  // Two tokens a chunk: usage says 8 a request, the chunks alone 4 (an undercount).
  FakeServer pairs({"--tokens-per-chunk", "2"});
  r = bench_load(settings(pairs, {2}));
  expect_all_completed(r, 4);
  expect_tokens(r, "usage", 32);
  EXPECT_GE(stat(r["runs"][0], "itl_ms", "median"), 25);  // a chunk every 2 x 20 ms

  auto s = settings(pairs, {2});
  s.include_usage = false;  // not asked for: the fake leaves usage out
  r = bench_load(s);
  expect_all_completed(r, 4);
  expect_tokens(r, "chunks", 16);
}

TEST(BenchLoadServer, ChatAndNonStreamingRequests) {
  FakeServer f;
  auto s = settings(f, {2});
  s.endpoint = "chat";
  json r = bench_load(s);
  expect_all_completed(r, 4);
  EXPECT_EQ(r["runs"][0]["output_tokens"], 32);
  EXPECT_GE(stat(r["runs"][0], "ttft_ms", "median"), 40);

  s.endpoint = "completions";
  s.stream = false;
  r = bench_load(s);
  expect_all_completed(r, 4);
  const auto& run = r["runs"][0];
  EXPECT_EQ(run["tokens_from"], "usage");
  EXPECT_TRUE(run["ttft_ms"]["median"].is_null());  // no first-token time without a stream
  EXPECT_TRUE(run["itl_ms"]["median"].is_null());
  EXPECT_GE(stat(run, "tpot_ms", "median"), 15);  // e2e / tokens >= (50 + 140) / 8
  EXPECT_GE(stat(run, "e2e_ms", "median"), 170);
}

TEST(BenchLoadServer, TgiStreamingAndNot) {
  FakeServer f;
  auto s = settings(f, {1, 3}, 3);
  s.api = "tgi";
  json r = bench_load(s);
  expect_all_completed(r, 3);
  for (const auto& run : r["runs"]) {
    EXPECT_EQ(run["tokens_from"], "usage");
    EXPECT_EQ(run["output_tokens"], 24);
    EXPECT_GE(stat(run, "ttft_ms", "median"), 40);
    EXPECT_GE(stat(run, "itl_ms", "median"), 12);
  }
  s.stream = false;
  r = bench_load(s);
  expect_all_completed(r, 3);
  EXPECT_EQ(r["runs"][0]["output_tokens"], 24);

  FakeServer bare({"--no-usage"});
  s = settings(bare, {2});
  s.api = "tgi";
  r = bench_load(s);
  expect_all_completed(r, 4);
  expect_tokens(r, "chunks", 32);
}

TEST(BenchLoadServer, PoissonArrivalsAndGoodput) {
  FakeServer f;
  auto s = settings(f, {4}, 6);
  s.request_rate = 20;
  s.slo_ttft_ms = 60000;
  s.slo_tpot_ms = 60000;
  json r = bench_load(s);
  expect_all_completed(r, 6);
  const auto& run = r["runs"][0];
  EXPECT_EQ(run["request_rate"], 20.0);
  EXPECT_DOUBLE_EQ(run["goodput_req_s"].get<double>(), run["requests_per_s"].get<double>());

  s.slo_ttft_ms = 1;  // no request makes its first token within 1 ms of a 50 ms delay
  r = bench_load(s);
  EXPECT_EQ(r["runs"][0]["goodput_req_s"], 0.0);
}

TEST(BenchLoadServer, ServerDownIsOneClearError) {
  auto s = LoadSettings{};
  s.url = "http://127.0.0.1:" + std::to_string(testing::unused_port());
  s.ready_timeout_s = 0.5;
  try {
    bench_load(s);
    FAIL() << "no error";
  } catch (const sllm::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(s.url), std::string::npos) << m;
    EXPECT_NE(m.find("not ready"), std::string::npos) << m;
  }
}

// Each failure mode: all requests fail with the reason, the run is still in the result.
void expect_failures(const std::vector<std::string>& args, const std::string& reason,
                     double timeout_s = 30) {
  FakeServer f(args);
  auto s = settings(f, {2}, 2);
  s.timeout_s = timeout_s;
  const json r = bench_load(s);
  ASSERT_EQ(r["runs"].size(), 1u);
  const auto& run = r["runs"][0];
  EXPECT_EQ(run["num_requests"], 2);
  EXPECT_EQ(run["completed"], 0);
  EXPECT_EQ(run["errors"].value(reason, 0), 2) << run.dump();
}

TEST(BenchLoadServer, GarbageResponses) { expect_failures({"--mode", "garbage"}, "bad_response"); }
TEST(BenchLoadServer, HttpErrors) { expect_failures({"--mode", "http500"}, "http_500"); }
TEST(BenchLoadServer, HangingServerTimesOut) { expect_failures({"--mode", "hang"}, "timeout", 1); }
TEST(BenchLoadServer, SlowServerTimesOut) {
  // 8 tokens 300 ms apart take 2.1 s; the limit is 0.8 s.
  expect_failures({"--mode", "slow", "--slow-token-ms", "300"}, "timeout", 0.8);
}
TEST(BenchLoadServer, TruncatedStreams) { expect_failures({"--mode", "truncate"}, "incomplete"); }

json config_for(const std::string& url, const json& extra) {
  const auto table = options::join({bench_load_options(), bench_output_options()});
  json flags = {
      {"load", {{"url", url}, {"concurrency", "1"}, {"num_prompts", 4}, {"max_tokens", 8}}}};
  config::deep_merge(flags, extra);
  return config::resolve(options::defaults(table), {{"test", flags}});
}

TEST(BenchLoadServer, PartialFailureKeepsResultsAndExitsNonZero) {
  FakeServer f({"--mode", "fail_every", "--fail-every", "2"});
  const std::string dir = testing::temp_dir();
  const auto cfg = config_for(f.url(), {{"json", true}, {"out", dir + "/r.json"}});
  ::testing::internal::CaptureStderr();
  ::testing::internal::CaptureStdout();
  const int rc = run_bench_load(cfg);
  const std::string out = ::testing::internal::GetCapturedStdout();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find(f.url()), std::string::npos) << err;
  EXPECT_NE(err.find("http_500"), std::string::npos) << err;
  EXPECT_NE(err.find("partial"), std::string::npos) << err;
  const json printed = json::parse(out);
  const json written = json::parse(testing::read_text(dir + "/r.json"));
  EXPECT_EQ(printed, written);
  const auto& run = written["runs"][0];
  EXPECT_EQ(run["completed"], 2);
  EXPECT_EQ(run["errors"]["http_500"], 2);
  EXPECT_GE(stat(run, "ttft_ms", "median"), 40);  // the completed half is measured
  std::remove((dir + "/r.json").c_str());
  std::remove(dir.c_str());
}

TEST(BenchLoadServer, TextOutputsOfARun) {
  FakeServer f;
  for (const char* fmt : {"csv", "markdown", "table"}) {
    auto cfg =
        config_for(f.url(), fmt == std::string("table") ? json::object() : json{{fmt, true}});
    ::testing::internal::CaptureStdout();
    EXPECT_EQ(run_bench_load(cfg), 0);
    const std::string out = ::testing::internal::GetCapturedStdout();
    if (fmt == std::string("csv")) {
      EXPECT_EQ(out.rfind("concurrency,request_rate,", 0), 0u) << out;
      EXPECT_NE(out.find("\n1,0,4,4,0,"), std::string::npos) << out;
    } else if (fmt == std::string("markdown")) {
      EXPECT_EQ(out.rfind("| conc |", 0), 0u) << out;
      EXPECT_NE(out.find("|---|"), std::string::npos);
    } else {
      EXPECT_NE(out.find("TTFT p50"), std::string::npos) << out;
      EXPECT_NE(out.find("4/4"), std::string::npos) << out;
    }
  }
}

TEST(BenchLoadServer, ExitsNonZeroWhenEveryRequestFails) {
  FakeServer f({"--mode", "http500"});
  ::testing::internal::CaptureStderr();
  ::testing::internal::CaptureStdout();
  const int rc = run_bench_load(config_for(f.url(), json::object()));
  ::testing::internal::GetCapturedStdout();
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(rc, 1);
  EXPECT_NE(err.find(f.url() + ": 4 of 4 requests failed"), std::string::npos) << err;
}

}  // namespace
}  // namespace sllm::apps
