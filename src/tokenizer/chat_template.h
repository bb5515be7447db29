// Chat prompt formats: detects the family from the model's jinja template and renders messages
// exactly as that template does (no jinja engine; the families are hard-coded).
#pragma once

#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace sllm::tok {

enum class ChatFormat { chatml, llama2, llama3, mistral, plain };

struct ChatTemplate {
  ChatFormat format = ChatFormat::plain;
  // System prompt the template inserts when the conversation has none (SmolLM2, Qwen2).
  std::string default_system;
  std::string bos_text;  // "<s>" or "<|begin_of_text|>" when the format writes it
  std::string eos_text;  // "</s>" after assistant turns (llama2, mistral)
  // Llama-3.1+ always emits a system turn that starts with this ("Cutting Knowledge Date: ...").
  std::string system_prefix;
};

// Detection: "<|im_start|>" -> chatml, "<|start_header_id|>" -> llama3, "[INST]" with "<<SYS>>" ->
// llama2, "[INST]" -> mistral; empty/unknown -> chatml if the vocab has <|im_start|>, else plain.
ChatTemplate detect_chat_template(const Tokenizer& t);

// Renders messages as the HF jinja template of that family does, optionally with the assistant
// generation prompt. Throws sllm::Error where the template would raise (llama2/mistral roles
// that do not alternate user/assistant).
std::string render_chat(const ChatTemplate& tpl, const std::vector<ChatMessage>& msgs,
                        bool add_generation_prompt);

std::string to_string(ChatFormat f);

}  // namespace sllm::tok
