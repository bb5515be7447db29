// LoRA adapters over a LlamaModel: inject fresh adapters, merge them into dense weights, and
// read/write the Hugging Face PEFT layout (adapter_config.json + adapter_model.safetensors).
#pragma once

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

#include "model/llama.h"

namespace sllm::lora {

struct LoraConfig {
  int64_t r = 16;
  double alpha = 32;
  double dropout = 0.05;
  // Module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or
  // {"all-linear"} (every decoder Linear; lm_head excluded, as PEFT does).
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  bool rslora = false;  // scale alpha / sqrt(r) instead of alpha / r

  double scale() const;
  // Reads the `lora` config object (keys r, alpha, dropout, target_modules, rslora); errors
  // name the key.
  static LoraConfig from_json(const nlohmann::json& j);
};

// The module names a decoder layer has ("q_proj", ..., "down_proj").
std::vector<std::string> module_names(const model::LlamaModel& m);

// Adds adapters to every target module: A ~ Kaiming-uniform (a = sqrt(5), as PEFT), B = 0, both
// fp32 and requiring grad. Unknown target names are an error listing the names that exist.
std::shared_ptr<model::LlamaModel> inject(const model::LlamaModel& m, const LoraConfig& c,
                                          uint64_t seed);

// PEFT's print_trainable_parameters line: "trainable params: 1,843,200 || all params: ... ||
// trainable%: 1.3514". total counts 4-bit weights by element count (as PEFT does not: see docs).
std::string trainable_summary(int64_t trainable, int64_t total);

// Writes dir/adapter_config.json and dir/adapter_model.safetensors atomically (the directory is
// replaced only once complete). base_model is recorded as base_model_name_or_path.
void save_peft(const model::LlamaModel& m, const LoraConfig& c, const std::string& dir,
               const std::string& base_model, bool replace = false);

// Reads a PEFT LoRA adapter directory and returns the base with those adapters (fp32, no grad).
// Errors: missing files, non-LORA peft_type, fan_in_fan_out, DoRA, bias != none, tensors whose
// module the model lacks or whose shapes do not fit.
std::shared_ptr<model::LlamaModel> load_peft(const model::LlamaModel& base, const std::string& dir,
                                             LoraConfig* config = nullptr);

// Multi-LoRA serving: m plus the PEFT adapter in dir as served adapter `id` (> 0, applied only to
// the rows a model::ServedAdapterRows scope gives it). Adapters on lm_head are refused.
std::shared_ptr<model::LlamaModel> add_served_adapter(const model::LlamaModel& m,
                                                      const std::string& dir, int32_t id);

// Dense model with W += scale * B @ A for every adapter (4-bit weights are dequantized first);
// the result has no adapters.
std::shared_ptr<model::LlamaModel> merge(const model::LlamaModel& m);

}  // namespace sllm::lora
