// The load mode's parsing without a server: SSE framing, the OpenAI / TGI decoders, the options.
#include <gtest/gtest.h>

#include "apps/bench_load.h"
#include "apps/bench_load_client.h"
#include "core/config.h"
#include "core/options.h"
#include "sllm/error.h"

namespace sllm::apps {
namespace {

using load::Api;
using load::RequestResult;
using load::ResponseDecoder;
using load::SseSplitter;
using nlohmann::json;

TEST(BenchLoadSse, SplitsEventsAcrossChunksAndLineEnds) {
  SseSplitter s;
  EXPECT_TRUE(s.feed("data: {\"a\"").empty());
  auto ev = s.feed(":1}\r\n\r\n: a comment\nevent: x\ndata: one\ndata: two\n\ndata:[DONE]\n\n");
  ASSERT_EQ(ev.size(), 3u);
  EXPECT_EQ(ev[0], "{\"a\":1}");
  EXPECT_EQ(ev[1], "one\ntwo");
  EXPECT_EQ(ev[2], "[DONE]");
  EXPECT_FALSE(s.flush().has_value());
  EXPECT_TRUE(s.feed("data: last").empty());
  EXPECT_EQ(s.flush().value_or(""), "last");
}

TEST(BenchLoadDecoder, OpenAIStreamCountsTextChunksAndUsage) {
  ResponseDecoder d(Api::OpenAI);
  RequestResult r;
  EXPECT_TRUE(d.event(R"({"choices":[{"delta":{"role":"assistant"}}]})", 1, r));
  EXPECT_TRUE(d.event(R"({"choices":[{"delta":{"content":"Hi"}}]})", 5, r));
  EXPECT_TRUE(d.event(R"({"choices":[{"text":" there"}]})", 9, r));
  EXPECT_TRUE(d.event(R"({"choices":[],"usage":{"completion_tokens":3}})", 10, r));
  d.finish_stream(r);
  EXPECT_FALSE(r.ok) << "no [DONE] yet";
  EXPECT_EQ(r.error, "incomplete");

  ResponseDecoder d2(Api::OpenAI);
  RequestResult r2;
  d2.event(R"({"choices":[{"text":"a"}]})", 5, r2);
  d2.event("[DONE]", 6, r2);
  d2.finish_stream(r2);
  EXPECT_TRUE(r2.ok);
  EXPECT_EQ(r2.chunks, 1);
  EXPECT_FALSE(r2.usage_tokens.has_value());
  EXPECT_EQ(r2.output_tokens(), 1);
  EXPECT_EQ(r.chunks, 2);  // the role-only chunk carries no text
  EXPECT_EQ(r.usage_tokens.value_or(-1), 3);
  EXPECT_EQ(r.token_ms, (std::vector<double>{5, 9}));
}

TEST(BenchLoadDecoder, TgiStreamEndsWithGeneratedText) {
  ResponseDecoder d(Api::Tgi);
  RequestResult r;
  EXPECT_TRUE(
      d.event(R"({"token":{"id":1,"text":"a","special":false},"generated_text":null})", 3, r));
  EXPECT_TRUE(d.event(R"({"token":{"id":2,"text":"","special":true},"generated_text":"a",
                          "details":{"generated_tokens":2}})",
                      4, r));
  d.finish_stream(r);
  EXPECT_TRUE(r.ok) << r.detail;
  EXPECT_EQ(r.chunks, 2);
  EXPECT_EQ(r.output_tokens(), 2);
}

TEST(BenchLoadDecoder, GarbageAndErrorsAreReasons) {
  RequestResult r;
  EXPECT_FALSE(ResponseDecoder(Api::OpenAI).event("{not json", 1, r));
  EXPECT_EQ(r.error, "bad_response");
  RequestResult r2;
  EXPECT_FALSE(ResponseDecoder(Api::OpenAI).event(R"({"error":{"message":"overloaded"}})", 1, r2));
  EXPECT_EQ(r2.error, "server_error");
  EXPECT_NE(r2.detail.find("overloaded"), std::string::npos);
  RequestResult r3;
  EXPECT_FALSE(ResponseDecoder(Api::Tgi).event(R"({"text":"no token"})", 1, r3));
  EXPECT_EQ(r3.error, "bad_response");
  RequestResult r4;
  ResponseDecoder(Api::OpenAI).body("<html>", r4);
  EXPECT_EQ(r4.error, "bad_response");
  RequestResult r5;
  ResponseDecoder(Api::Tgi).body(R"({"generated_text":"x","details":{"generated_tokens":7}})", r5);
  EXPECT_TRUE(r5.ok);
  EXPECT_EQ(r5.output_tokens(), 7);
}

TEST(BenchLoadRequest, BodiesFollowEachApi) {
  load::RequestSpec s;
  s.model = "m";
  s.max_tokens = 9;
  auto b = json::parse(load::request_body(s, "hi"));
  EXPECT_EQ(load::request_path(s), "/v1/completions");
  EXPECT_EQ(b["prompt"], "hi");
  EXPECT_EQ(b["max_tokens"], 9);
  EXPECT_EQ(b["stream_options"]["include_usage"], true);
  s.chat = true;
  s.include_usage = false;
  b = json::parse(load::request_body(s, "hi"));
  EXPECT_EQ(load::request_path(s), "/v1/chat/completions");
  EXPECT_EQ(b["messages"][0]["content"], "hi");
  EXPECT_FALSE(b.contains("stream_options"));
  s.api = Api::Tgi;
  b = json::parse(load::request_body(s, "hi"));
  EXPECT_EQ(load::request_path(s), "/generate_stream");
  EXPECT_EQ(b["inputs"], "hi");
  EXPECT_EQ(b["parameters"]["max_new_tokens"], 9);
  s.stream = false;
  EXPECT_EQ(load::request_path(s), "/generate");
}

TEST(BenchLoadOptions, UrlsSlosAndLists) {
  auto u = load::parse_url("http://127.0.0.1:8080/api/");
  EXPECT_EQ(u.origin, "http://127.0.0.1:8080");
  EXPECT_EQ(u.prefix, "/api");
  EXPECT_EQ(load::parse_url("https://example.org").prefix, "");
  EXPECT_THROW(load::parse_url("127.0.0.1:8080"), sllm::Error);
  EXPECT_THROW(load::parse_url("ftp://x"), sllm::Error);
  EXPECT_THROW(load::parse_api("vllm"), sllm::Error);

  LoadSettings s;
  parse_slo("ttft=500,tpot=50.5", s);
  EXPECT_EQ(s.slo_ttft_ms.value_or(0), 500);
  EXPECT_EQ(s.slo_tpot_ms.value_or(0), 50.5);
  EXPECT_THROW(parse_slo("ttft=fast", s), sllm::Error);
  EXPECT_THROW(parse_slo("e2e=5", s), sllm::Error);

  EXPECT_EQ(parse_int_list("1,4,16,64", "k"), (std::vector<int>{1, 4, 16, 64}));
  EXPECT_EQ(parse_int_list(json::array({1, "4,16", "64"}), "k"), (std::vector<int>{1, 4, 16, 64}));
  try {
    parse_int_list("1,x", "load.concurrency");
    FAIL() << "no error";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("load.concurrency"), std::string::npos);
  }
}

TEST(BenchLoadOptions, TableResolvesIntoSettings) {
  const auto table = options::join({bench_load_options(), bench_output_options()});
  const auto defaults = options::defaults(table);
  auto cfg = config::resolve(defaults, {{"command line",
                                         {{"load",
                                           {{"url", "http://127.0.0.1:1"},
                                            {"concurrency", "2,8"},
                                            {"slo", "ttft=100"},
                                            {"stream", false},
                                            {"model", "x"}}}}}});
  const auto s = load_settings_from_config(cfg);
  EXPECT_EQ(s.concurrency, (std::vector<int>{2, 8}));
  EXPECT_EQ(s.slo_ttft_ms.value_or(0), 100);
  EXPECT_FALSE(s.slo_tpot_ms.has_value());
  EXPECT_FALSE(s.stream);
  EXPECT_EQ(s.model, "x");
  EXPECT_EQ(s.api, "openai");
  // Without a URL the settings name the missing option.
  EXPECT_THROW(load_settings_from_config(config::resolve(defaults, {})), sllm::Error);
  for (const auto& o : table)
    EXPECT_TRUE(o.key.rfind("load.", 0) == 0 || o.key.find('.') == std::string::npos) << o.key;
}

}  // namespace
}  // namespace sllm::apps
