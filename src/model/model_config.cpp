#include "model/model_config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace sllm::model {

void ModelConfig::validate(const std::string& source) const {
  SLLM_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_layers > 0,
             "{}: model sizes must be positive (vocab {}, hidden {}, intermediate {}, layers {})",
             source, vocab_size, hidden_size, intermediate_size, num_layers);
  SLLM_CHECK(num_heads > 0 && num_kv_heads > 0 && num_heads % num_kv_heads == 0,
             "{}: num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})",
             source, num_heads, num_kv_heads);
  SLLM_CHECK(head_dim > 0 && head_dim % 2 == 0, "{}: head_dim must be positive and even, got {}",
             source, head_dim);
  SLLM_CHECK(
      rope_scaling.type == "none" || rope_scaling.type == "linear" || rope_scaling.type == "llama3",
      "{}: rope_scaling type '{}' is not supported (none, linear, llama3)", source,
      rope_scaling.type);
}

int64_t ModelConfig::num_parameters() const {
  const int64_t attn = hidden_size * head_dim * (num_heads * 2 + num_kv_heads * 2) +
                       (attention_bias ? head_dim * (num_heads + 2 * num_kv_heads) : 0);
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t per_layer = attn + mlp + 2 * hidden_size;
  const int64_t embed = vocab_size * hidden_size;
  return embed * (tie_embeddings ? 1 : 2) + num_layers * per_layer + hidden_size;
}

namespace {
template <class T>
T req(const nlohmann::json& j, const char* key, const std::string& source) {
  SLLM_CHECK(j.contains(key) && !j[key].is_null(), "{}: missing required key '{}'", source, key);
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    SLLM_FAIL("{}: key '{}' has the wrong type ({})", source, key, j[key].type_name());
  }
}
template <class T>
T opt(const nlohmann::json& j, const char* key, T def, const std::string& source) {
  if (!j.contains(key) || j[key].is_null()) return def;
  return req<T>(j, key, source);
}
int64_t first_id(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return -1;
  if (j[key].is_array()) return j[key].empty() ? -1 : j[key][0].get<int64_t>();
  return j[key].is_number_integer() ? j[key].get<int64_t>() : -1;
}
}  // namespace

ModelConfig config_from_hf(const nlohmann::json& j, const std::string& source) {
  SLLM_CHECK(j.is_object(), "{}: expected a JSON object", source);
  ModelConfig c;
  const auto model_type = opt<std::string>(j, "model_type", "llama", source);
  SLLM_CHECK(model_type == "llama" || model_type == "mistral" || model_type == "qwen2",
             "{}: model_type '{}' is not supported; sllm runs llama, mistral and qwen2 "
             "(SmolLM uses llama)",
             source, model_type);
  c.architecture = model_type;
  c.vocab_size = req<int64_t>(j, "vocab_size", source);
  c.hidden_size = req<int64_t>(j, "hidden_size", source);
  c.intermediate_size = req<int64_t>(j, "intermediate_size", source);
  c.num_layers = req<int64_t>(j, "num_hidden_layers", source);
  c.num_heads = req<int64_t>(j, "num_attention_heads", source);
  c.num_kv_heads = opt<int64_t>(j, "num_key_value_heads", c.num_heads, source);
  c.head_dim =
      opt<int64_t>(j, "head_dim", c.num_heads > 0 ? c.hidden_size / c.num_heads : 0, source);
  c.max_position = opt<int64_t>(j, "max_position_embeddings", 2048, source);
  c.rms_norm_eps = opt<double>(j, "rms_norm_eps", 1e-6, source);
  c.rope_theta = opt<double>(j, "rope_theta", 10000.0, source);
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object() &&
      j["rope_parameters"].contains("rope_theta"))
    c.rope_theta = j["rope_parameters"]["rope_theta"].get<double>();
  c.tie_embeddings = opt<bool>(j, "tie_word_embeddings", false, source);
  c.attention_bias = opt<bool>(j, "attention_bias", model_type == "qwen2", source);
  c.bos_token_id = first_id(j, "bos_token_id");
  c.eos_token_id = first_id(j, "eos_token_id");
  // transformers >= 5 writes theta and scaling under "rope_parameters", older versions
  // under "rope_theta" + "rope_scaling"; read whichever names a scaling type.
  const char* scaling_key = nullptr;
  for (const char* k : {"rope_parameters", "rope_scaling"}) {
    if (j.contains(k) && j[k].is_object() &&
        (j[k].contains("rope_type") || j[k].contains("type"))) {
      scaling_key = k;
      break;
    }
  }
  if (scaling_key) {
    const auto& rs = j[scaling_key];
    std::string type = rs.value("rope_type", rs.value("type", std::string("none")));
    if (type == "default") type = "none";
    c.rope_scaling.type = type;
    c.rope_scaling.factor = rs.value("factor", 1.0);
    c.rope_scaling.low_freq_factor = rs.value("low_freq_factor", 1.0);
    c.rope_scaling.high_freq_factor = rs.value("high_freq_factor", 4.0);
    c.rope_scaling.original_max_position =
        rs.value("original_max_position_embeddings", int64_t{8192});
  }
  c.validate(source);
  return c;
}

nlohmann::json config_to_hf(const ModelConfig& c, const std::string& torch_dtype) {
  const std::string cls = c.architecture == "qwen2"     ? "Qwen2ForCausalLM"
                          : c.architecture == "mistral" ? "MistralForCausalLM"
                                                        : "LlamaForCausalLM";
  nlohmann::json j = {
      {"architectures", {cls}},
      {"model_type", c.architecture},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_position},
      {"rms_norm_eps", c.rms_norm_eps},
      {"rope_theta", c.rope_theta},
      {"tie_word_embeddings", c.tie_embeddings},
      {"hidden_act", "silu"},
      {"torch_dtype", torch_dtype},
  };
  if (c.architecture != "qwen2") {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = false;
  }
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_id >= 0) j["eos_token_id"] = c.eos_token_id;
  if (c.rope_scaling.type == "none") {
    j["rope_scaling"] = nullptr;
  } else {
    j["rope_scaling"] = {{"rope_type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
    if (c.rope_scaling.type == "llama3") {
      j["rope_scaling"]["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      j["rope_scaling"]["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      j["rope_scaling"]["original_max_position_embeddings"] = c.rope_scaling.original_max_position;
    }
  }
  return j;
}

}  // namespace sllm::model
