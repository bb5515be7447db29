// Tool calls cut out of generated text, per template family.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "serve/tool_calls.h"

namespace {

using namespace sllm::serve;
using nlohmann::json;

std::string read(const std::string& name) {
  std::ifstream f(std::string(SLLM_SOURCE_DIR) + "/tests/data/chat_templates/" + name);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(ToolCalls, FormatFromTheTemplateText) {
  EXPECT_EQ(detect_tool_call_format(read("Qwen-Qwen2.5-7B-Instruct.jinja")),
            ToolCallFormat::hermes);
  EXPECT_EQ(detect_tool_call_format(read("meta-llama-Llama-3.1-8B-Instruct.jinja")),
            ToolCallFormat::llama3);
  EXPECT_EQ(detect_tool_call_format(read("mistralai-Mistral-Nemo-Instruct-2407.jinja")),
            ToolCallFormat::mistral);
  EXPECT_EQ(detect_tool_call_format(read("HuggingFaceTB-SmolLM2-135M-Instruct.jinja")),
            ToolCallFormat::none);
  EXPECT_EQ(detect_tool_call_format(read("google-gemma-2-2b-it.jinja")), ToolCallFormat::none);
}

TEST(ToolCalls, Hermes) {
  auto a =
      parse_tool_calls(ToolCallFormat::hermes,
                       "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                       "{\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"t\", "
                       "\"arguments\": {}}\n</tool_call>");
  ASSERT_EQ(a.calls.size(), 2u);
  EXPECT_EQ(a.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(a.calls[0].arguments), json({{"city", "Paris"}}));
  EXPECT_EQ(a.calls[1].arguments, "{}");
  EXPECT_EQ(a.content, "Let me check.");
  // A call cut by max_tokens before its closing tag still parses when its JSON is whole.
  a = parse_tool_calls(ToolCallFormat::hermes, "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}");
  ASSERT_EQ(a.calls.size(), 1u);
  EXPECT_EQ(a.content, "");
  // Not a call: the text stays content.
  for (const char* t :
       {"<tool_call>{\"name\": \"f\", \"argu", "<tool_call>[1]</tool_call>", "no calls here"}) {
    a = parse_tool_calls(ToolCallFormat::hermes, t);
    EXPECT_TRUE(a.calls.empty()) << t;
    EXPECT_EQ(a.content, t);
  }
}

TEST(ToolCalls, Llama3AndMistral) {
  auto a = parse_tool_calls(ToolCallFormat::llama3,
                            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}");
  ASSERT_EQ(a.calls.size(), 1u);
  EXPECT_EQ(json::parse(a.calls[0].arguments)["city"], "Oslo");
  EXPECT_EQ(a.content, "");
  a = parse_tool_calls(ToolCallFormat::llama3, "The weather is fine.");
  EXPECT_TRUE(a.calls.empty());
  EXPECT_EQ(a.content, "The weather is fine.");
  a = parse_tool_calls(
      ToolCallFormat::mistral,
      "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", "
      "\"arguments\": \"{\\\"y\\\": 2}\"}]");
  ASSERT_EQ(a.calls.size(), 2u);
  EXPECT_EQ(json::parse(a.calls[1].arguments)["y"], 2);
  a = parse_tool_calls(ToolCallFormat::mistral, "[{\"name\": \"a\", \"arguments\": {}}]");
  EXPECT_TRUE(a.calls.empty());  // no [TOOL_CALLS] marker: plain text
}

}  // namespace
