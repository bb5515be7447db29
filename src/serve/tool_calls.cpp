#include "serve/tool_calls.h"

namespace sllm::serve {

using nlohmann::json;

namespace {

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

// {"name": string, <args_key>: object (or the JSON text of one)} -> a call.
bool to_call(const json& j, std::vector<ToolCall>& out) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
  const json* args = nullptr;
  for (const char* k : {"arguments", "parameters"})
    if (j.contains(k)) args = &j[k];
  json a = args ? *args : json::object();
  if (a.is_string()) a = json::parse(a.get<std::string>(), nullptr, false);
  if (!a.is_object()) return false;
  out.push_back({j["name"].get<std::string>(), a.dump()});
  return true;
}

bool to_calls(const json& j, std::vector<ToolCall>& out) {
  if (!j.is_array()) return to_call(j, out);
  for (const auto& e : j)
    if (!to_call(e, out)) return false;
  return !j.empty();
}

ParsedAnswer hermes(const std::string& text) {
  static const std::string open = "<tool_call>", close = "</tool_call>";
  ParsedAnswer a;
  std::string rest;
  size_t at = 0;
  while (true) {
    const size_t b = text.find(open, at);
    if (b == std::string::npos) break;
    size_t e = text.find(close, b);
    const std::string body = text.substr(
        b + open.size(), e == std::string::npos ? std::string::npos : e - b - open.size());
    std::vector<ToolCall> calls;
    if (!to_calls(json::parse(body, nullptr, false), calls)) break;  // not a call: plain text
    rest += text.substr(at, b - at);
    a.calls.insert(a.calls.end(), calls.begin(), calls.end());
    at = e == std::string::npos ? text.size() : e + close.size();
  }
  a.content = trim(rest + text.substr(at));
  return a;
}

ParsedAnswer whole_answer(std::string_view text, std::string_view marker) {
  ParsedAnswer a;
  std::string_view body = text;
  const auto m = marker.empty() ? std::string_view::npos : text.find(marker);
  if (!marker.empty()) {
    if (m == std::string_view::npos) return {trim(text), {}};
    body = text.substr(m + marker.size());
  }
  std::vector<ToolCall> calls;
  if (!to_calls(json::parse(trim(body), nullptr, false), calls)) return {trim(text), {}};
  a.calls = std::move(calls);
  a.content = m == std::string_view::npos ? "" : trim(text.substr(0, m));
  return a;
}

}  // namespace

ToolCallFormat detect_tool_call_format(std::string_view t) {
  if (t.find("tools") == std::string_view::npos) return ToolCallFormat::none;
  if (t.find("<tool_call>") != std::string_view::npos) return ToolCallFormat::hermes;
  if (t.find("[TOOL_CALLS]") != std::string_view::npos) return ToolCallFormat::mistral;
  if (t.find("<|start_header_id|>") != std::string_view::npos) return ToolCallFormat::llama3;
  return ToolCallFormat::none;
}

std::string to_string(ToolCallFormat f) {
  switch (f) {
    case ToolCallFormat::hermes:
      return "hermes";
    case ToolCallFormat::llama3:
      return "llama3";
    case ToolCallFormat::mistral:
      return "mistral";
    case ToolCallFormat::none:
      break;
  }
  return "none";
}

ParsedAnswer parse_tool_calls(ToolCallFormat f, const std::string& text) {
  switch (f) {
    case ToolCallFormat::hermes:
      return hermes(text);
    case ToolCallFormat::llama3: {
      std::string_view t = text;
      if (t.find("<|python_tag|>") == 0) t.remove_prefix(14);
      return whole_answer(t, "");
    }
    case ToolCallFormat::mistral:
      return whole_answer(text, "[TOOL_CALLS]");
    case ToolCallFormat::none:
      break;
  }
  return {text, {}};
}

}  // namespace sllm::serve
