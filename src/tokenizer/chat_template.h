// Chat prompts: the model's own Jinja chat template (GGUF `tokenizer.chat_template` or
// tokenizer_config.json's `chat_template`) rendered by the interpreter of jinja.h, as transformers'
// apply_chat_template renders it. Models without a template fall back to a hard-coded family
// format (ChatML when the vocabulary has <|im_start|>, else the contents one per line).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace sllm::tok {

namespace jinja {
class Template;
}

enum class ChatFormat { chatml, llama2, llama3, mistral, plain };

struct ChatTemplate {
  ChatFormat format = ChatFormat::plain;
  // System prompt the template inserts when the conversation has none (SmolLM2, Qwen2).
  std::string default_system;
  std::string bos_text;  // "<s>" or "<|begin_of_text|>" when the format writes it
  std::string eos_text;  // "</s>" after assistant turns (llama2, mistral)
  // Llama-3.1+ always emits a system turn that starts with this ("Cutting Knowledge Date: ...").
  std::string system_prefix;
  // The model's compiled template; when set, render_chat renders it and the fields above only
  // describe the family (turn-end token, whether the text starts with BOS).
  std::shared_ptr<const jinja::Template> jinja;
  std::string bos_token, eos_token;  // the template's bos_token / eos_token variables
};

// The family of the template text: "<|im_start|>" -> chatml, "<|start_header_id|>" -> llama3,
// "[INST]" with "<<SYS>>" -> llama2, "[INST]" -> mistral; empty/unknown -> chatml if the vocab has
// <|im_start|>, else plain. No Jinja: render_chat then renders the hard-coded family format.
ChatTemplate family_chat_template(const Tokenizer& t);

// The family plus the model's compiled Jinja template. A model without a template, or with one
// the interpreter cannot parse, keeps the family format (logged once per template).
ChatTemplate detect_chat_template(const Tokenizer& t);
// The same with another template text than the model's (e.g. one that offers tools).
ChatTemplate detect_chat_template(const Tokenizer& t, const std::string& text);

// Renders messages with the model's template (or the family format), optionally with the assistant
// generation prompt. Throws sllm::Error where the template raises (e.g. roles that do not
// alternate user/assistant).
std::string render_chat(const ChatTemplate& tpl, const std::vector<ChatMessage>& msgs,
                        bool add_generation_prompt);
// The same with OpenAI-style message objects (tool_calls, tool messages) and tool schemas
// (null for none), in the caller's key order (tojson keeps it, as Python does); only a Jinja
// template can render tools.
std::string render_chat(const ChatTemplate& tpl, const nlohmann::ordered_json& messages,
                        const nlohmann::ordered_json& tools, bool add_generation_prompt);

std::string to_string(ChatFormat f);

}  // namespace sllm::tok
