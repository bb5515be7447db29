// sllm bench's pure parts: statistics, --models parsing, tolerance, prompt sets and the gate.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "apps/bench/bench.h"
#include "core/error.h"

namespace b = sllm::apps::bench;
using nlohmann::json;

TEST(BenchStats, PercentilesInterpolateLikeNumpy) {
  const std::vector<double> xs = {4, 1, 3, 2};  // sorted 1 2 3 4
  EXPECT_DOUBLE_EQ(b::percentile(xs, 50), 2.5);
  EXPECT_DOUBLE_EQ(b::percentile(xs, 0), 1);
  EXPECT_DOUBLE_EQ(b::percentile(xs, 100), 4);
  EXPECT_NEAR(b::percentile(xs, 95), 3.85, 1e-12);  // numpy.percentile([1,2,3,4], 95)
  const auto s = b::summarize(xs);
  EXPECT_DOUBLE_EQ(s.mean, 2.5);
  EXPECT_NEAR(s.std, 1.2909944487358056, 1e-12);  // sample std (ddof=1)
  EXPECT_EQ(b::summarize({7}).std, 0);
  EXPECT_TRUE(b::to_json(b::summarize({}))["p50"].is_null());
}

TEST(BenchStats, RepFiguresAndMismatches) {
  b::ModelRun m;
  // rep 0: two requests; decode excludes each request's first token.
  m.requests.push_back({0, 0, 10, 5, 100, 20, 20.0, {1, 2, 3, 4, 5}, "a"});
  m.requests.push_back({1, 0, 30, 1, 50, 30, std::nullopt, {9}, "b"});
  m.requests.push_back({0, 1, 10, 5, 100, 20, 20.0, {1, 2, 3, 4, 6}, "a'"});
  const auto f = b::rep_figures(m);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_DOUBLE_EQ(f[0].prefill_tok_s, 40 / 0.05);  // 40 prompt tokens over 50 ms of TTFT
  EXPECT_DOUBLE_EQ(f[0].decode_tok_s, 4 / 0.08);    // 4 tokens after the first, over 80 ms
  EXPECT_DOUBLE_EQ(f[0].latency_p50, 75);
  const auto mm = b::output_mismatches(m);
  ASSERT_EQ(mm.size(), 1u);
  EXPECT_EQ(mm[0], "prompt 1 (rep 0 vs rep 1)");
}

TEST(BenchOptions, ModelsParse) {
  const auto v = b::parse_models(json::array({"base=m.gguf,tuned=dir+ad", "q=qdir"}));
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[1].name, "tuned");
  EXPECT_EQ(v[1].path, "dir");
  EXPECT_EQ(v[1].adapter, "ad");
  EXPECT_EQ(v[2].spec, "qdir");
  for (const char* bad : {"nopath", "=x", "a=", "a=x+", "a=x+y+z", "a b=x"})
    EXPECT_THROW(b::parse_models(json::array({bad})), sllm::Error) << bad;
  EXPECT_THROW(b::parse_models(json::array({"a=x,a=y"})), sllm::Error);
  EXPECT_THROW(b::parse_models(json::array()), sllm::Error);
}

TEST(BenchOptions, Tolerance) {
  EXPECT_DOUBLE_EQ(b::parse_tolerance("10%"), 0.1);
  EXPECT_DOUBLE_EQ(b::parse_tolerance("0.25"), 0.25);
  EXPECT_THROW(b::parse_tolerance("ten"), sllm::Error);
  EXPECT_THROW(b::parse_tolerance("-1%"), sllm::Error);
}

TEST(BenchPrompts, FileLinesAndErrors) {
  const auto dir = std::filesystem::temp_directory_path() / "sllm_bench_prompts";
  std::filesystem::create_directories(dir);
  const auto ok = (dir / "ok.jsonl").string(), bad = (dir / "bad.jsonl").string();
  std::ofstream(ok) << "{\"prompt\": \"hi\", \"max_new_tokens\": 3}\n\n"
                    << "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": "
                       "\"assistant\", \"content\": \"a\"}]}\n";
  const auto p = b::load_prompt_set(ok, 9);
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].max_new_tokens, 3);
  EXPECT_EQ(p[1].max_new_tokens, 9);
  EXPECT_EQ(p[1].messages.size(), 1u);  // the answer is not part of the prompt
  std::ofstream(bad) << "{\"prompt\": \"hi\"}\n{\"prompt\": \n";
  try {
    b::load_prompt_set(bad, 9);
    FAIL() << "no error";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
  std::ofstream(bad) << "";
  EXPECT_THROW(b::load_prompt_set(bad, 9), sllm::Error);
  EXPECT_THROW(b::load_prompt_set("builtin:nope", 9), sllm::Error);
  std::filesystem::remove_all(dir);
}

namespace {
json report_with(const std::string& out, double ppl, double tok_s) {
  return {{"kind", "offline"},
          {"settings",
           {{"prompt_set", "p"}, {"prompts", 1}, {"max_new_tokens", 4}, {"ignore_eos", false}}},
          {"models",
           json::array({{{"name", "m"},
                         {"error", nullptr},
                         {"requests",
                          json::array({{{"rep", 0}, {"prompt_index", 0}, {"output_text", out}}})},
                         {"quality", {{"ppl", ppl}, {"exact_match", nullptr}}},
                         {"decode_tok_s", {{"mean", tok_s}, {"std", 0}}},
                         {"latency_ms", {{"p50", 10.0}}}}})}};
}
}  // namespace

TEST(BenchGate, QualityAndSpeed) {
  const auto base = report_with("Paris", 10, 100);
  EXPECT_TRUE(b::gate(base, report_with("Paris", 10.5, 50), true, false, 0.1).empty());
  EXPECT_EQ(b::gate(base, report_with("Lyon", 10, 100), true, false, 0.1).size(), 1u);
  EXPECT_EQ(b::gate(base, report_with("Paris", 11.5, 100), true, false, 0.1).size(), 1u);
  EXPECT_EQ(b::gate(base, report_with("Paris", 10, 80), false, true, 0.1).size(), 1u);
  EXPECT_TRUE(b::gate(base, report_with("Paris", 10, 95), false, true, 0.1).empty());
  auto missing = report_with("Paris", 10, 100);
  missing["models"][0]["name"] = "other";
  EXPECT_EQ(b::gate(base, missing, true, false, 0.1).size(), 1u);
}
