#include "tokenizer/chat_template.h"

#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.h"
#include "core/log.h"
#include "tokenizer/jinja.h"
#include "tokenizer/jinja_builtins.h"
#include "tokenizer/pretokenize.h"

namespace sllm::tok {

namespace {

using jinja::py_strip;

// Undoes jinja string-literal escapes in a literal lifted out of the template source.
std::string unescape_literal(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A system prompt written literally after "<|im_start|>system\n" (SmolLM2, Qwen2); pieces built
// from expressions (quotes, braces, '+') are not literal defaults.
std::string chatml_default_system(const std::string& tpl) {
  const std::string head = "<|im_start|>system";
  for (size_t pos = tpl.find(head); pos != std::string::npos; pos = tpl.find(head, pos + 1)) {
    size_t start = pos + head.size();
    if (tpl.compare(start, 1, "\n") == 0)
      start += 1;
    else if (tpl.compare(start, 2, "\\n") == 0)
      start += 2;
    else
      continue;
    size_t end = tpl.find("<|im_end|>", start);
    if (end == std::string::npos) continue;
    std::string_view cand(tpl.data() + start, end - start);
    if (cand.empty() || cand.find_first_of("'\"{}+") != std::string_view::npos) continue;
    return unescape_literal(cand);
  }
  return {};
}

std::string llama31_system_prefix(const std::string& tpl) {
  if (tpl.find("Cutting Knowledge Date") == std::string::npos) return {};
  std::string date = "26 Jul 2024";  // the template's fallback when no date is passed in
  const std::string key = "set date_string = \"";
  if (size_t p = tpl.find(key); p != std::string::npos) {
    size_t e = tpl.find('"', p + key.size());
    if (e != std::string::npos) date = tpl.substr(p + key.size(), e - p - key.size());
  }
  return "Cutting Knowledge Date: December 2023\nToday Date: " + date + "\n\n";
}

std::string piece_or(const Tokenizer& t, int32_t id, const char* fallback) {
  return id >= 0 && id < t.vocab_size() ? t.piece(id) : std::string(fallback);
}

void check_alternation(const std::vector<ChatMessage>& loop) {
  for (size_t i = 0; i < loop.size(); ++i)
    SLLM_CHECK((loop[i].role == "user") == (i % 2 == 0),
               "chat: conversation roles must alternate user/assistant/user/assistant/... "
               "(message {} has role '{}')",
               i, loop[i].role);
}

}  // namespace

std::string to_string(ChatFormat f) {
  switch (f) {
    case ChatFormat::chatml:
      return "chatml";
    case ChatFormat::llama2:
      return "llama2";
    case ChatFormat::llama3:
      return "llama3";
    case ChatFormat::mistral:
      return "mistral";
    case ChatFormat::plain:
      return "plain";
  }
  return "plain";
}

namespace {
ChatTemplate family_of(const Tokenizer& t, const std::string& tpl) {
  ChatTemplate ct;
  if (tpl.find("<|im_start|>") != std::string::npos) {
    ct.format = ChatFormat::chatml;
    ct.default_system = chatml_default_system(tpl);
  } else if (tpl.find("<|start_header_id|>") != std::string::npos) {
    ct.format = ChatFormat::llama3;
    ct.bos_text = piece_or(t, t.bos_id, "<|begin_of_text|>");
    ct.system_prefix = llama31_system_prefix(tpl);
  } else if (tpl.find("[INST]") != std::string::npos) {
    ct.format = tpl.find("<<SYS>>") != std::string::npos ? ChatFormat::llama2 : ChatFormat::mistral;
    ct.bos_text = piece_or(t, t.bos_id, "<s>");
    ct.eos_text = piece_or(t, t.eos_id, "</s>");
  } else {
    auto im = t.token_to_id("<|im_start|>");
    ct.format = im ? ChatFormat::chatml : ChatFormat::plain;
  }
  return ct;
}
}  // namespace

ChatTemplate family_chat_template(const Tokenizer& t) { return family_of(t, t.chat_template); }

namespace {

// Templates are compiled once per text (generate, serve and training call detect repeatedly) and
// each outcome is logged once.
std::shared_ptr<const jinja::Template> compile_cached(const std::string& text, ChatFormat family) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::shared_ptr<const jinja::Template>> cache;
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = cache.find(text); it != cache.end()) return it->second;
  std::shared_ptr<const jinja::Template> compiled;
  if (text.empty()) {
    log::info("chat template: the model has none; using the {} format", to_string(family));
  } else {
    try {
      compiled = std::make_shared<const jinja::Template>(text);
      log::debug("chat template: rendering the model's Jinja template");
    } catch (const Error& e) {
      log::warn("chat template: {}; using the {} format instead (docs/chat_templates.md)", e.what(),
                to_string(family));
    }
  }
  cache.emplace(text, compiled);
  return compiled;
}

}  // namespace

ChatTemplate detect_chat_template(const Tokenizer& t) {
  return detect_chat_template(t, t.chat_template);
}

ChatTemplate detect_chat_template(const Tokenizer& t, const std::string& text) {
  ChatTemplate ct = family_of(t, text);
  ct.jinja = compile_cached(text, ct.format);
  if (ct.jinja) {
    ct.bos_token = t.bos_id >= 0 && t.bos_id < t.vocab_size() ? t.piece(t.bos_id) : "";
    ct.eos_token = t.eos_id >= 0 && t.eos_id < t.vocab_size() ? t.piece(t.eos_id) : "";
    // Whether the rendered text starts with BOS: the template writes it itself.
    ct.bos_text = text.find("bos_token") != std::string::npos ? ct.bos_token : "";
  }
  return ct;
}

std::string render_chat(const ChatTemplate& tpl, const nlohmann::ordered_json& messages,
                        const nlohmann::ordered_json& tools, bool add_generation_prompt) {
  SLLM_CHECK(tpl.jinja || tools.is_null() || tools.empty(),
             "chat: tools need the model's own chat template, and this model has none");
  if (!tpl.jinja) {
    std::vector<ChatMessage> msgs;
    for (const auto& m : messages) msgs.push_back({m.value("role", ""), m.value("content", "")});
    return render_chat(tpl, msgs, add_generation_prompt);
  }
  // The variables apply_chat_template passes (documents unused by these templates).
  jinja::Value ctx = {
      {"messages", messages},       {"tools", tools},
      {"documents", nullptr},       {"add_generation_prompt", add_generation_prompt},
      {"bos_token", tpl.bos_token}, {"eos_token", tpl.eos_token}};
  return tpl.jinja->render(ctx);
}

std::string render_chat(const ChatTemplate& tpl, const std::vector<ChatMessage>& msgs,
                        bool add_generation_prompt) {
  if (tpl.jinja) {
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    for (const auto& m : msgs) messages.push_back({{"role", m.role}, {"content", m.content}});
    return render_chat(tpl, messages, nullptr, add_generation_prompt);
  }
  std::string out;
  const bool has_system = !msgs.empty() && msgs[0].role == "system";
  switch (tpl.format) {
    case ChatFormat::chatml:
      if (!msgs.empty() && !has_system && !tpl.default_system.empty())
        out += "<|im_start|>system\n" + tpl.default_system + "<|im_end|>\n";
      for (const auto& m : msgs) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;

    case ChatFormat::llama3: {
      auto turn = [&](const std::string& role, const std::string& content) {
        out += "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + content + "<|eot_id|>";
      };
      if (!tpl.system_prefix.empty()) {  // Llama-3.1+: BOS, then always a system turn
        out += tpl.bos_text;
        turn("system", tpl.system_prefix + (has_system ? py_strip(msgs[0].content) : ""));
        for (size_t i = has_system ? 1 : 0; i < msgs.size(); ++i)
          turn(msgs[i].role, py_strip(msgs[i].content));
      } else {  // Llama-3.0: BOS glued to the first message
        for (size_t i = 0; i < msgs.size(); ++i) {
          if (i == 0) out += tpl.bos_text;
          turn(msgs[i].role, py_strip(msgs[i].content));
        }
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    }

    case ChatFormat::llama2: {
      std::vector<ChatMessage> loop(msgs.begin() + (has_system ? 1 : 0), msgs.end());
      check_alternation(loop);
      for (size_t i = 0; i < loop.size(); ++i) {
        std::string content = loop[i].content;
        if (i == 0 && has_system)
          content = "<<SYS>>\n" + msgs[0].content + "\n<</SYS>>\n\n" + content;
        if (loop[i].role == "user")
          out += tpl.bos_text + "[INST] " + py_strip(content) + " [/INST]";
        else if (loop[i].role == "assistant")
          out += " " + py_strip(content) + " " + tpl.eos_text;
      }
      break;  // the template has no generation prompt
    }

    case ChatFormat::mistral: {
      std::vector<ChatMessage> loop(msgs.begin() + (has_system ? 1 : 0), msgs.end());
      check_alternation(loop);
      out += tpl.bos_text;
      for (size_t i = 0; i < loop.size(); ++i) {
        if (loop[i].role == "user") {
          std::string sys = i == 0 && has_system ? msgs[0].content + "\n\n" : "";
          out += "[INST] " + sys + loop[i].content + " [/INST]";
        } else if (loop[i].role == "assistant") {
          out += loop[i].content + tpl.eos_text;
        } else {
          SLLM_FAIL(
              "chat: only user and assistant roles are supported after an optional system "
              "message (got '{}')",
              loop[i].role);
        }
      }
      break;
    }

    case ChatFormat::plain:
      // No template: the contents one per line; a base model simply continues the text.
      for (size_t i = 0; i < msgs.size(); ++i) {
        if (i) out += "\n";
        out += msgs[i].content;
      }
      break;
  }
  return out;
}

}  // namespace sllm::tok
