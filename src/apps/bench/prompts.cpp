// Prompt sets: JSONL files and the built-in sets shipped under data/.
#include <filesystem>
#include <map>

#include "apps/bench/bench.h"
#include "core/error.h"
#include "io/atomic_write.h"

namespace fs = std::filesystem;

namespace sllm::apps::bench {

using nlohmann::json;

std::string find_data_file(const std::string& relative) {
  std::vector<fs::path> roots = {fs::current_path()};
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    roots.push_back(exe.parent_path().parent_path());  // build/sllm -> the source tree
    roots.push_back(exe.parent_path());
  }
  for (const auto& r : roots)
    if (fs::is_regular_file(r / relative, ec)) return (r / relative).string();
  return "";
}

namespace {

const std::map<std::string, std::string>& builtins() {
  static const std::map<std::string, std::string> m = {
      {"chat", "data/bench/chat.jsonl"},
      {"summarize", "data/bench/summarize.jsonl"},
      {"office", "data/office/test.jsonl"},
  };
  return m;
}

std::string label_of(const std::string& s) {
  std::string l;
  for (char c : s) {
    if (l.size() >= 60) {
      l += "...";
      break;
    }
    l += (c == '\n' || c == '\t' || c == '\r') ? ' ' : c;
  }
  return l;
}

Prompt parse_line(const json& j, const std::string& where, int64_t default_max) {
  Prompt p;
  p.max_new_tokens = default_max;
  if (j.is_string()) {
    p.text = j.get<std::string>();
  } else {
    SLLM_CHECK(j.is_object() && (j.contains("prompt") || j.contains("messages")),
               "{}: expected an object with \"prompt\" (a string) or \"messages\" (a list of "
               "{{role, content}})",
               where);
    if (j.contains("messages")) {
      const auto& m = j["messages"];
      SLLM_CHECK(m.is_array() && !m.empty(), "{}: \"messages\" must be a non-empty list", where);
      for (const auto& msg : m)
        SLLM_CHECK(msg.is_object() && msg.contains("role") && msg["role"].is_string() &&
                       msg.contains("content") && msg["content"].is_string(),
                   "{}: every message needs \"role\" and \"content\" strings", where);
      // A training line ends with the assistant's answer: the prompt is what comes before it.
      p.messages = m;
      if (p.messages.size() > 1 && p.messages.back()["role"] == "assistant")
        p.messages.erase(p.messages.size() - 1);
      p.label = label_of(p.messages.back()["content"].get<std::string>());
    } else {
      SLLM_CHECK(j["prompt"].is_string(), "{}: \"prompt\" must be a string", where);
      p.text = j["prompt"].get<std::string>();
    }
    if (j.contains("max_new_tokens")) {
      SLLM_CHECK(j["max_new_tokens"].is_number_integer() && j["max_new_tokens"].get<int64_t>() > 0,
                 "{}: \"max_new_tokens\" must be a positive integer", where);
      p.max_new_tokens = j["max_new_tokens"].get<int64_t>();
    }
  }
  if (p.messages.is_null()) {
    SLLM_CHECK(!p.text.empty(), "{}: the prompt is empty", where);
    p.label = label_of(p.text);
  }
  return p;
}

}  // namespace

std::vector<Prompt> load_prompt_set(const std::string& spec, int64_t default_max) {
  std::string path = spec;
  if (spec.rfind("builtin:", 0) == 0) {
    const std::string name = spec.substr(8);
    const auto it = builtins().find(name);
    SLLM_CHECK(it != builtins().end(),
               "--prompt-set {}: no such built-in set; use builtin:chat, builtin:summarize or "
               "builtin:office",
               spec);
    path = find_data_file(it->second);
    SLLM_CHECK(!path.empty(),
               "--prompt-set {}: {} not found (looked in the current directory and next to the "
               "sllm binary); run from the source tree",
               spec, it->second);
  }
  const std::string body = io::read_file(path);
  std::vector<Prompt> out;
  size_t start = 0;
  int64_t line = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    ++line;
    const std::string_view s(body.data() + start, end - start);
    start = end + 1;
    if (s.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = path + ":" + std::to_string(line);
    json j;
    try {
      j = json::parse(s);
    } catch (const json::exception& e) {
      SLLM_FAIL("{}: invalid JSON ({})", where, e.what());
    }
    out.push_back(parse_line(j, where, default_max));
  }
  SLLM_CHECK(!out.empty(),
             "{}: no prompts in the file (one JSON object per line: {{\"prompt\": "
             "\"...\"}})",
             path);
  return out;
}

}  // namespace sllm::apps::bench
