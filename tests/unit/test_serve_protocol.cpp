// The HTTP API's request parsing (src/serve/protocol): valid OpenAI / TGI bodies map onto the
// sampling parameters, every client mistake is one ApiError with the right status and parameter,
// and a bounded fuzz of mutated bodies never escapes as anything but ApiError.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "serve/metrics.h"
#include "serve/protocol.h"

namespace sllm::serve {
namespace {

const ParseLimits kLim{/*max_total_tokens=*/1024, /*max_n=*/4, /*max_stop=*/4};

ApiError error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError";
  return ApiError(0, "");
}

TEST(ServeProtocol, CompletionDefaultsAndFields) {
  auto r = parse_completion(R"({"model":"m","prompt":"Hi"})", kLim);
  EXPECT_EQ(r.kind, Kind::completion);
  EXPECT_EQ(r.prompt, "Hi");
  EXPECT_EQ(r.params.max_new_tokens, 16);
  EXPECT_FALSE(r.max_tokens_given);
  EXPECT_DOUBLE_EQ(r.params.temperature, 1.0);
  EXPECT_FALSE(r.stream);

  r = parse_completion(R"({"model":"m","prompt":["Hi"],"max_tokens":5,"temperature":0,
      "top_p":0.5,"seed":-3,"stop":"\n","stream":true,"stream_options":{"include_usage":true},
      "n":2,"user":"u","presence_penalty":0.5,"frequency_penalty":-1,"logprobs":null})",
                       kLim);
  EXPECT_EQ(r.params.max_new_tokens, 5);
  EXPECT_TRUE(r.max_tokens_given);
  EXPECT_DOUBLE_EQ(r.params.temperature, 0.0);
  EXPECT_DOUBLE_EQ(r.params.top_p, 0.5);
  EXPECT_DOUBLE_EQ(r.params.presence_penalty, 0.5);
  EXPECT_DOUBLE_EQ(r.params.frequency_penalty, -1.0);
  EXPECT_EQ(r.params.seed, static_cast<uint64_t>(int64_t{-3}));
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.params.stop, std::vector<std::string>{"\n"});
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.n, 2);
}

TEST(ServeProtocol, ChatMessagesAndMaxCompletionTokens) {
  auto r = parse_chat(R"({"model":"m","messages":[{"role":"developer","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
      "max_completion_tokens":7,"response_format":{"type":"text"}})",
                      kLim);
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.params.max_new_tokens, 7);
  EXPECT_FALSE(r.json_object);
  EXPECT_TRUE(parse_chat(R"({"model":"m","messages":[{"role":"user","content":"x"}],
      "response_format":{"type":"json_object"}})",
                         kLim)
                  .json_object);
  // Without max_tokens a chat may run to max_total_tokens (cut to the room left at admission).
  r = parse_chat(R"({"model":"m","messages":[{"role":"user","content":"x"}]})", kLim);
  EXPECT_FALSE(r.max_tokens_given);
  EXPECT_EQ(r.params.max_new_tokens, 1024);
}

TEST(ServeProtocol, TgiParameters) {
  // The text-generation client sends every parameter, most as null.
  auto r = parse_tgi(R"({"inputs":"Hello","stream":false,"parameters":{"best_of":null,
      "details":true,"do_sample":false,"max_new_tokens":20,"repetition_penalty":null,
      "frequency_penalty":null,"return_full_text":false,"seed":null,"stop":["x"],
      "temperature":null,"top_k":null,"top_p":null,"truncate":null,"typical_p":null,
      "watermark":false,"decoder_input_details":false,"top_n_tokens":null,"grammar":null}})",
                     kLim, false);
  EXPECT_EQ(r.prompt, "Hello");
  EXPECT_EQ(r.params.max_new_tokens, 20);
  EXPECT_DOUBLE_EQ(r.params.temperature, 0.0);  // greedy unless sampling is asked for
  EXPECT_TRUE(r.details);
  EXPECT_EQ(r.params.stop, std::vector<std::string>{"x"});
  r = parse_tgi(R"({"inputs":"a","parameters":{"temperature":0.5,"top_k":3}})", kLim, true);
  EXPECT_TRUE(r.stream);
  EXPECT_DOUBLE_EQ(r.params.temperature, 0.5);
  EXPECT_EQ(r.params.top_k, 3);
  r = parse_tgi(R"({"inputs":"a","parameters":{"do_sample":true,"seed":7}})", kLim, false);
  EXPECT_DOUBLE_EQ(r.params.temperature, 1.0);
  EXPECT_EQ(r.params.seed, 7u);
}

// Log-probabilities: off unless asked for; N alternatives otherwise (TGI: with a stream or
// details, whose token events carry them).
TEST(ServeProtocol, Logprobs) {
  const std::string chat = R"({"model":"m","messages":[{"role":"user","content":"x"}])";
  EXPECT_EQ(parse_chat(chat + "}", kLim).logprobs, -1);
  EXPECT_EQ(parse_chat(chat + R"(,"logprobs":false})", kLim).logprobs, -1);
  EXPECT_EQ(parse_chat(chat + R"(,"logprobs":true})", kLim).logprobs, 0);
  EXPECT_EQ(parse_chat(chat + R"(,"logprobs":true,"top_logprobs":20})", kLim).logprobs, 20);
  EXPECT_EQ(parse_chat(chat + R"(,"logprobs":true,"top_logprobs":null})", kLim).logprobs, 0);
  const std::string cmpl = R"({"model":"m","prompt":"x")";
  EXPECT_EQ(parse_completion(cmpl + "}", kLim).logprobs, -1);
  EXPECT_EQ(parse_completion(cmpl + R"(,"logprobs":false})", kLim).logprobs, -1);
  EXPECT_EQ(parse_completion(cmpl + R"(,"logprobs":0})", kLim).logprobs, 0);
  EXPECT_EQ(parse_completion(cmpl + R"(,"logprobs":5})", kLim).logprobs, 5);
  EXPECT_EQ(parse_tgi(R"({"inputs":"a"})", kLim, false).logprobs, -1);
  EXPECT_EQ(parse_tgi(R"({"inputs":"a","parameters":{"top_n_tokens":3}})", kLim, false).logprobs,
            -1);
  EXPECT_EQ(parse_tgi(R"({"inputs":"a","parameters":{"details":true}})", kLim, false).logprobs, 0);
  EXPECT_EQ(parse_tgi(R"({"inputs":"a","parameters":{"top_n_tokens":3}})", kLim, true).logprobs, 3);
}

struct Bad {
  const char* body;
  int status;
  const char* param;  // "" = none expected
  const char* says;   // a part of the message
};

TEST(ServeProtocol, OpenAiMistakesAreOneClearError) {
  const Bad cases[] = {
      {"{\"model\":", 400, "", "not valid JSON"},
      {"[1,2]", 400, "", "JSON object"},
      {"{\"model\":\"m\",\"prompt\":\"\xff\xfe\"}", 400, "", "UTF-8"},
      {R"({"prompt":"x"})", 400, "model", "required"},
      {R"({"model":"m"})", 400, "prompt", "required"},
      {R"({"model":"m","prompt":""})", 400, "prompt", "empty"},
      {R"({"model":"m","prompt":[1,2]})", 400, "prompt", "not supported"},
      {R"({"model":"m","prompt":"x","max_tokens":-1})", 400, "max_tokens", "[1, 1023]"},
      {R"({"model":"m","prompt":"x","max_tokens":1e30})", 400, "max_tokens", "integer"},
      {R"({"model":"m","prompt":"x","max_tokens":99999999999999999999})", 400, "max_tokens", ""},
      {R"({"model":"m","prompt":"x","max_tokens":"5"})", 400, "max_tokens", "integer"},
      {R"({"model":"m","prompt":"x","temperature":3})", 400, "temperature", "[0, 2]"},
      {R"({"model":"m","prompt":"x","top_p":0})", 400, "top_p", "(0, 1]"},
      {R"({"model":"m","prompt":"x","n":0})", 400, "n", ""},
      {R"({"model":"m","prompt":"x","stop":[1]})", 400, "stop", "strings"},
      {R"({"model":"m","prompt":"x","stop":["a","b","c","d","e"]})", 400, "stop", "at most 4"},
      {R"({"model":"m","prompt":"x","stream_options":{"include_usage":true}})", 400,
       "stream_options", "stream"},
      {R"({"model":"m","prompt":"x","logprobs":21})", 400, "logprobs", "[0, 20]"},
      {R"({"model":"m","prompt":"x","logprobs":-1})", 400, "logprobs", "[0, 20]"},
      {R"({"model":"m","prompt":"x","logprobs":true})", 400, "logprobs", "integer"},
      {R"({"model":"m","prompt":"x","logprobs":1.5})", 400, "logprobs", "integer"},
      {R"({"model":"m","prompt":"x","echo":true})", 400, "echo", "not supported"},
      {R"({"model":"m","prompt":"x","frequency_penalty":2.5})", 400, "frequency_penalty",
       "[-2, 2]"},
      {R"({"model":"m","prompt":"x","presence_penalty":"1"})", 400, "presence_penalty", "number"},
      {R"({"model":"m","prompt":"x","bogus":1})", 400, "bogus", "not a recognized"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body);
    const ApiError e = error_of([&] { parse_completion(c.body, kLim); });
    EXPECT_EQ(e.status, c.status);
    EXPECT_EQ(e.param, c.param);
    EXPECT_NE(e.message.find(c.says), std::string::npos) << e.message;
    const auto j = error_body(Api::openai, e);
    EXPECT_EQ(j["error"]["message"], e.message);
    EXPECT_EQ(j["error"]["type"], "invalid_request_error");
    EXPECT_TRUE(j["error"].contains("param") && j["error"].contains("code"));
  }
  const Bad chat[] = {
      {R"({"model":"m","messages":[]})", 400, "messages", "non-empty"},
      {R"({"model":"m","messages":[{"role":"critic","content":"x"}]})", 400, "messages[0].role",
       "one of"},
      {R"({"model":"m","messages":[{"role":"tool","content":"x"}]})", 400,
       "messages[0].tool_call_id", "required"},
      {R"({"model":"m","messages":[{"role":"assistant","tool_calls":[{"type":"function",
          "function":{"name":"f","arguments":"[1]"}}]}]})",
       400, "messages[0].tool_calls[0].function.arguments", "object"},
      {R"({"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f"}}]}]})",
       400, "messages[0].tool_calls[0]", "arguments"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"required",
          "tools":[{"type":"function","function":{"name":"f"}}]})",
       400, "tool_choice", "not supported"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],
          "tools":[{"type":"function","function":{"name":"f","parameters":[]}}]})",
       400, "tools[0].function.parameters", "JSON Schema"},
      {R"({"model":"m","messages":[{"role":"user","content":5}]})", 400, "messages[0].content",
       "string"},
      {R"({"model":"m","messages":[{"role":"user","content":"x","extra":1}]})", 400,
       "messages[0].extra", "not a recognized"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{}]})", 400,
       "tools[0].type", "function"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":1})", 400, "logprobs",
       "boolean"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"response_format":"json"})", 400,
       "response_format", "object"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],
          "response_format":{"type":"json_schema","json_schema":{}}})",
       400, "response_format.type", "json_schema is not supported"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],
          "response_format":{"type":"json_object","strict":true}})",
       400, "response_format.strict", "not a recognized"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2})", 400,
       "top_logprobs", "'logprobs' to be true"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,
          "top_logprobs":21})",
       400, "top_logprobs", "[0, 20]"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,
          "top_logprobs":"3"})",
       400, "top_logprobs", "integer"},
  };
  for (const auto& c : chat) {
    SCOPED_TRACE(c.body);
    const ApiError e = error_of([&] { parse_chat(c.body, kLim); });
    EXPECT_EQ(e.status, c.status);
    EXPECT_EQ(e.param, c.param);
    EXPECT_NE(e.message.find(c.says), std::string::npos) << e.message;
  }
}

TEST(ServeProtocol, TgiMistakesAreValidationErrors) {
  const Bad cases[] = {
      {R"({"inputs":""})", 422, "inputs", "cannot be empty"},
      {R"({"parameters":{}})", 422, "inputs", "cannot be empty"},
      {R"({"inputs":"a","parameters":{"temperature":0}})", 422, "temperature", "(0, 100]"},
      {R"({"inputs":"a","parameters":{"top_p":1.0}})", 422, "top_p", "(0, 1)"},
      {R"({"inputs":"a","parameters":{"max_new_tokens":0}})", 422, "max_new_tokens", ""},
      {R"({"inputs":"a","parameters":{"watermark":true}})", 422, "watermark", "not supported"},
      {R"({"inputs":"a","parameters":{"truncate":10}})", 422, "truncate", "not supported"},
      {R"({"inputs":"a","parameters":"x"})", 422, "parameters", "object"},
      {R"({"inputs":"a","parameters":{"top_n_tokens":21}})", 422, "top_n_tokens", "[0, 20]"},
      {R"({"inputs":"a","parameters":{"top_n_tokens":-2}})", 422, "top_n_tokens", "[0, 20]"},
      {R"({"inputs":"a","parameters":{"top_n_tokens":true}})", 422, "top_n_tokens", "integer"},
      {"{\"inputs\":", 400, "", "not valid JSON"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.body);
    const ApiError e = error_of([&] { parse_tgi(c.body, kLim, false); });
    EXPECT_EQ(e.status, c.status);
    EXPECT_EQ(e.param, c.param);
    EXPECT_NE(e.message.find(c.says), std::string::npos) << e.message;
    const auto j = error_body(Api::tgi, e);
    EXPECT_EQ(j["error"], e.message);
    EXPECT_TRUE(j["error_type"].is_string());
  }
  EXPECT_EQ(error_body(Api::tgi, ApiError(429, "busy"))["error_type"], "overloaded");
}

// Mutations of valid bodies (truncation, byte flips, inserted JSON tokens) either parse or throw
// ApiError with a 4xx status: nothing else escapes and nothing crashes.
TEST(ServeProtocol, BoundedFuzzOnlyApiErrors) {
  const std::vector<std::string> seeds = {
      R"({"model":"m","prompt":"Hello","max_tokens":5,"stop":["a"],"stream":true,"stream_options":{"include_usage":true}})",
      R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"n":2,"seed":1})",
      R"({"inputs":"Hi","parameters":{"do_sample":true,"top_k":5,"top_p":0.9,"stop":["x"],"details":true}})",
  };
  const std::vector<std::string> tokens = {"{",    "}",  "[",     "]",    ",",   ":",    "\"",
                                           "null", "-1", "1e309", "\xff", "\\u", "true", "0.0"};
  std::mt19937 rng(1234);
  int parsed = 0, refused = 0;
  for (int iter = 0; iter < 6000; ++iter) {
    std::string s = seeds[iter % seeds.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      const size_t pos = rng() % s.size();
      switch (rng() % 4) {
        case 0:
          s.resize(pos);
          break;
        case 1:
          s[pos] = static_cast<char>(rng() % 256);
          break;
        case 2:
          s.insert(pos, tokens[rng() % tokens.size()]);
          break;
        default:
          s.erase(pos, 1 + rng() % 8);
      }
    }
    try {
      switch (iter % 3) {
        case 0:
          parse_completion(s, kLim);
          break;
        case 1:
          parse_chat(s, kLim);
          break;
        default:
          parse_tgi(s, kLim, false);
      }
      ++parsed;
    } catch (const ApiError& e) {
      ++refused;
      ASSERT_TRUE(e.status == 400 || e.status == 422) << e.status << " for " << s;
      ASSERT_FALSE(e.message.empty());
    }
  }
  EXPECT_GT(refused, 1000);
  EXPECT_GT(parsed, 10);
}

TEST(ServeMetrics, PrometheusText) {
  Metrics m;
  m.inc("sllm_requests_total", R"(route="/generate",status="200")");
  m.inc("sllm_requests_total", R"(route="/generate",status="200")");
  m.observe("sllm_time_to_first_token_seconds", 0.02);
  m.observe("sllm_time_to_first_token_seconds", 3);
  m.set("sllm_requests_running", 2);
  const std::string t = m.render();
  EXPECT_NE(t.find("# TYPE sllm_requests_total counter"), std::string::npos);
  EXPECT_NE(t.find(R"(sllm_requests_total{route="/generate",status="200"} 2)"), std::string::npos);
  EXPECT_NE(t.find(R"(sllm_time_to_first_token_seconds_bucket{le="0.025"} 1)"), std::string::npos);
  EXPECT_NE(t.find(R"(sllm_time_to_first_token_seconds_bucket{le="+Inf"} 2)"), std::string::npos);
  EXPECT_NE(t.find("sllm_time_to_first_token_seconds_count 2"), std::string::npos);
  EXPECT_NE(t.find("sllm_requests_running 2"), std::string::npos);
  EXPECT_DOUBLE_EQ(m.counter("sllm_requests_total", R"(route="/generate",status="200")"), 2);
  EXPECT_THROW(m.inc("no_such_metric"), std::exception);
}

TEST(ServeProtocol, AdapterId) {
  EXPECT_EQ(
      parse_tgi(R"({"inputs":"x","parameters":{"adapter_id":"support"}})", kLim, false).adapter_id,
      "support");
  EXPECT_EQ(parse_tgi(R"({"inputs":"x","parameters":{"adapter_id":null}})", kLim, false).adapter_id,
            "");
  const ApiError e =
      error_of([&] { parse_tgi(R"({"inputs":"x","parameters":{"adapter_id":3}})", kLim, false); });
  EXPECT_EQ(e.status, 422);
  EXPECT_EQ(e.param, "adapter_id");
}

TEST(ServeProtocol, ToolsKeepTheRequestsObjectsForTheTemplate) {
  auto r = parse_chat(R"({"model":"m","tools":[{"type":"function","function":{"name":"get_weather",
      "description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
      "messages":[{"role":"user","content":"Weather in Paris?"},
      {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},
      {"role":"tool","tool_call_id":"call_1","content":"22 C"}]})",
                      kLim);
  EXPECT_TRUE(r.tool_calls_wanted());
  ASSERT_EQ(r.tools, std::vector<std::string>{"get_weather"});
  // Key order as written (tojson keeps it), arguments as an object for the template.
  EXPECT_EQ(r.tools_json[0]["function"].begin().key(), "name");
  EXPECT_EQ(r.messages_json[1]["tool_calls"][0]["function"]["arguments"]["city"], "Paris");
  EXPECT_EQ(r.messages_json[2]["role"], "tool");
  // tool_choice none: the tools are not shown to the model, the tool turns still are.
  r = parse_chat(R"({"model":"m","tool_choice":"none",
      "tools":[{"type":"function","function":{"name":"f"}}],
      "messages":[{"role":"user","content":"x"}]})",
                 kLim);
  EXPECT_FALSE(r.tool_calls_wanted());
  EXPECT_TRUE(r.tools_json.is_null());
  EXPECT_EQ(r.messages_json.size(), 1u);
  // Without tools or tool turns, the plain path.
  r = parse_chat(R"({"model":"m","messages":[{"role":"user","content":"x"}]})", kLim);
  EXPECT_TRUE(r.messages_json.is_null());
}

}  // namespace
}  // namespace sllm::serve
