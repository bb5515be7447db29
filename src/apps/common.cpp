#include "apps/common.h"

#include <ATen/Parallel.h>

#include <fmt/ranges.h>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "lora/lora.h"
#include "tokenizer/chat_template.h"

namespace sllm::apps {

nlohmann::json merged(nlohmann::json a, const nlohmann::json& b) {
  // Unlike JSON merge-patch, a null in b is a value (an optional key), not a deletion.
  for (const auto& [k, v] : b.items()) {
    if (v.is_object() && a.contains(k) && a[k].is_object()) {
      a[k] = merged(a[k], v);
    } else {
      a[k] = v;
    }
  }
  return a;
}

nlohmann::json model_defaults() {
  return {{"model", nullptr},
          {"adapter", nullptr},
          {"dtype", "fp32"},
          {"device", "cpu"},
          {"threads", 0}};
}

nlohmann::json engine_defaults() {
  return {{"ctx", 0},
          {"engine",
           {{"block_size", 16}, {"max_seqs", 16}, {"max_step_tokens", 512}, {"kv_tokens", 0}}}};
}

nlohmann::json sampling_defaults() {
  return {{"sampling",
           {{"temperature", 0.7},
            {"top_k", 0},
            {"top_p", 1.0},
            {"min_p", 0.0},
            {"repetition_penalty", 1.0},
            {"seed", 42},
            {"max_new_tokens", 256},
            {"stop", nlohmann::json::array()},
            {"ignore_eos", false}}}};
}

load::LoadedModel load_from_config(const nlohmann::json& cfg) {
  const auto threads = config::get<int64_t>(cfg, "threads");
  if (threads > 0) at::set_num_threads(static_cast<int>(threads));
  SLLM_CHECK(cfg["model"].is_string(),
             "no model given: pass --model <file.gguf | hf-directory> (run scripts/setup.sh for "
             "the default model, models/SmolLM2-135M-Instruct.Q4_1.gguf)");
  load::LoadOptions o;
  o.dtype = load::parse_dtype(config::get<std::string>(cfg, "dtype"));
  o.device = load::parse_device(config::get<std::string>(cfg, "device"));
  Timer t;
  auto m = load::load_model(cfg["model"].get<std::string>(), o);
  log::info("loaded {} ({}, {} layers) in {:.2f} s", m.display_name, m.format,
            m.model->config().num_layers, t.seconds());
  if (cfg["adapter"].is_string()) {
    const auto dir = cfg["adapter"].get<std::string>();
    lora::LoraConfig lc;
    m.model = lora::load_peft(*m.model, dir, &lc);
    log::info("adapter {} (LoRA r={}, alpha={}, {})", dir, lc.r, lc.alpha,
              fmt::join(lc.target_modules, ","));
  }
  return m;
}

engine::EngineOptions engine_options(const nlohmann::json& cfg) {
  engine::EngineOptions e;
  e.context = config::get<int64_t>(cfg, "ctx");
  e.block_size = static_cast<int32_t>(config::get<int64_t>(cfg, "engine.block_size"));
  e.max_seqs = config::get<int64_t>(cfg, "engine.max_seqs");
  e.max_step_tokens = config::get<int64_t>(cfg, "engine.max_step_tokens");
  e.kv_tokens = config::get<int64_t>(cfg, "engine.kv_tokens");
  return e;
}

engine::SamplingParams sampling_params(const nlohmann::json& cfg) {
  engine::SamplingParams p;
  p.temperature = config::get<double>(cfg, "sampling.temperature");
  p.top_k = config::get<int64_t>(cfg, "sampling.top_k");
  p.top_p = config::get<double>(cfg, "sampling.top_p");
  p.min_p = config::get<double>(cfg, "sampling.min_p");
  p.repetition_penalty = config::get<double>(cfg, "sampling.repetition_penalty");
  p.seed = static_cast<uint64_t>(config::get<int64_t>(cfg, "sampling.seed"));
  p.max_new_tokens = config::get<int64_t>(cfg, "sampling.max_new_tokens");
  for (const auto& s : cfg["sampling"]["stop"]) {
    SLLM_CHECK(s.is_string(), "sampling.stop must be a list of strings");
    p.stop.push_back(s.get<std::string>());
  }
  p.ignore_eos = config::get<bool>(cfg, "sampling.ignore_eos");
  p.validate();
  return p;
}

bool use_chat_template(const tok::Tokenizer& t, const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>();
  SLLM_CHECK(v.is_string() && (v == "auto" || v == "true" || v == "false"),
             "chat_template must be auto, true or false");
  if (v == "auto") return !t.chat_template.empty();
  return v == "true";
}

std::vector<int32_t> encode_chat(const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                                 const std::vector<tok::ChatMessage>& msgs) {
  std::vector<int32_t> ids;
  // A template that writes BOS itself already has it in the rendered text.
  if (t.add_bos && t.bos_id >= 0 && tpl.bos_text.empty()) ids.push_back(t.bos_id);
  auto body = t.encode(tok::render_chat(tpl, msgs, /*add_generation_prompt=*/true), true);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::vector<int32_t> encode_prompt(const tok::Tokenizer& t, const std::string& text, bool chat,
                                   const std::string& system) {
  SLLM_CHECK(!text.empty(), "the prompt is empty: give some text with --prompt or --prompt-file");
  if (chat) {
    std::vector<tok::ChatMessage> msgs;
    if (!system.empty()) msgs.push_back({"system", system});
    msgs.push_back({"user", text});
    return encode_chat(t, tok::detect_chat_template(t), msgs);
  }
  std::vector<int32_t> ids;
  if (t.add_bos && t.bos_id >= 0) ids.push_back(t.bos_id);
  auto body = t.encode(text, /*parse_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace sllm::apps
