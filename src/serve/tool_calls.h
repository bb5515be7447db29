// Tool calls in generated text. Each model family writes them its own way (its chat template
// shows how); the format is detected from the template text and the calls are cut out of the
// answer into OpenAI's tool_calls. Text that does not parse as calls stays plain content.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace sllm::serve {

enum class ToolCallFormat {
  none,     // the template renders no tools
  hermes,   // <tool_call>{"name": ..., "arguments": {...}}</tool_call> (Qwen2.5, Hermes)
  llama3,   // the whole answer {"name": ..., "parameters": {...}} (Llama 3.1+ JSON tool calling)
  mistral,  // [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (Mistral)
};

ToolCallFormat detect_tool_call_format(std::string_view chat_template);
std::string to_string(ToolCallFormat f);

struct ToolCall {
  std::string name;
  std::string arguments;  // the JSON text of an object
};

struct ParsedAnswer {
  std::string content;  // what remains around the calls, trimmed
  std::vector<ToolCall> calls;
};

ParsedAnswer parse_tool_calls(ToolCallFormat f, const std::string& text);

}  // namespace sllm::serve
