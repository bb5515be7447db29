// Hyper-parameters of a Llama-family decoder (Llama, Mistral, Qwen2, SmolLM).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace sllm::model {

struct RopeScaling {
  std::string type = "none";  // none | linear | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position = 8192;
};

struct ModelConfig {
  std::string architecture = "llama";  // llama | mistral | qwen2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;
  bool attention_bias = false;  // q/k/v bias (Qwen2)
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;

  // Checks internal consistency (heads divide hidden size, kv heads divide heads...).
  void validate(const std::string& source) const;
  int64_t num_parameters() const;
};

// Hugging Face config.json <-> ModelConfig. `source` names the file in error messages.
ModelConfig config_from_hf(const nlohmann::json& j, const std::string& source);
nlohmann::json config_to_hf(const ModelConfig& c, const std::string& torch_dtype);

}  // namespace sllm::model
