// Pieces every app shares: the config keys for model loading, engine and sampling,
// and turning a resolved config into the objects below the apps layer.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "core/options.h"
#include "engine/engine.h"
#include "load/loader.h"
#include "tokenizer/chat_template.h"

namespace sllm::apps {

// Option groups shared by the commands (core/options.h), each with the struct it fills.
const options::Group<load::LoadOptions>& model_group();          // model, dtype, device, threads
const options::Group<engine::EngineOptions>& engine_group();     // ctx, engine.*
const options::Group<engine::SamplingParams>& sampling_group();  // sampling.*
// quant.*: decoder Linears quantized while loading (none, nf4, fp4; nf4 is qlora-train's default).
options::Group<load::LoadOptions> quant_group(bool qlora);
// speculative.*: draft model or n-gram drafting, tokens per step (read by speculative_options).
options::Table speculative_table();

load::LoadedModel load_from_config(const nlohmann::json& cfg);
// The tokenizer of cfg's model alone, reading no weights (load::load_tokenizer).
std::shared_ptr<const tok::Tokenizer> load_tokenizer_from_config(const nlohmann::json& cfg);
engine::EngineOptions engine_options(const nlohmann::json& cfg);
engine::SamplingParams sampling_params(const nlohmann::json& cfg);  // validated
// The speculative decoding cfg asks for (loading the draft model with cfg's dtype and device),
// or nullopt when it asks for none.
std::optional<engine::SpeculativeOptions> speculative_options(const nlohmann::json& cfg);

// Chat messages -> ids with the model's template and the generation prompt (BOS when the
// model wants one and the template does not write it).
std::vector<int32_t> encode_chat(const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                                 const std::vector<tok::ChatMessage>& msgs);
// The same with OpenAI-style message objects and tool schemas (null: none), as the template
// receives them.
std::vector<int32_t> encode_chat(const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                                 const nlohmann::ordered_json& msgs,
                                 const nlohmann::ordered_json& tools);
// Prompt text -> ids: optional chat template (with system prompt), BOS when the model wants it.
std::vector<int32_t> encode_prompt(const tok::Tokenizer& t, const std::string& text, bool chat,
                                   const std::string& system);
// "auto" -> whether the model carries a chat template; "true"/"false" as given.
bool use_chat_template(const tok::Tokenizer& t, const nlohmann::json& value);

}  // namespace sllm::apps
