// The transformers / bitsandbytes 4-bit checkpoint layout (a model loaded with
// BitsAndBytesConfig(load_in_4bit=True, ...) and saved with save_pretrained), both ways.
//
// For a quantized module M (e.g. "model.layers.0.self_attn.q_proj") the checkpoint holds
//   M.weight                                  U8  [(numel + 1) / 2, 1]  packed codes
//   M.weight.absmax                           U8  [blocks] (double quant) | F32 [blocks]
//   M.weight.quant_map                        F32 [16]
//   M.weight.nested_absmax                    F32 [ceil(blocks / 256)]  (double quant only)
//   M.weight.nested_quant_map                 F32 [256]                 (double quant only)
//   M.weight.quant_state.bitsandbytes__<type> U8  [bytes]  JSON of the non-tensor quant state
// and config.json a "quantization_config" object. Everything else (embeddings, norms, lm_head,
// biases, modules left dense) is stored as a plain dense tensor. Details: docs/nf4.md.
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "quant/nf4.h"

namespace sllm::model {
class LlamaModel;
struct Linear;
}  // namespace sllm::model

namespace sllm::load::bnb {

// Name suffixes after "<module>.weight" (bitsandbytes QuantState.as_dict(packed=True) keys).
inline constexpr const char* kQuantStatePrefix = "quant_state.bitsandbytes__";

// ---- saving ----

// The tensors transformers writes for one quantized module: `packed` holds the packed bytes
// (q.weight may be empty, as in a Linear whose bytes moved into its compute tensors), q the rest
// of the quant state. Names are "<module>.weight", "<module>.weight.absmax", ... in the order
// bitsandbytes' _save_to_state_dict emits them.
std::vector<std::pair<std::string, at::Tensor>> module_tensors(const std::string& module,
                                                               const quant::Nf4Weight& q,
                                                               const at::Tensor& packed);

// The tensors of every module of a 4-bit Linear of decoder layer `layer`, keyed by the dense
// name they stand for ("model.layers.N.<part>.weight"), in part order. The quant states record
// dtype as the weights' dtype (what transformers records for a model loaded in that dtype).
// Biases are not included (they are dense tensors). quant_layout::hf_tensors splices these into
// the state dict.
std::vector<std::pair<std::string, std::vector<std::pair<std::string, at::Tensor>>>> linear_tensors(
    int64_t layer, const model::Linear& l, at::ScalarType dtype);

// config.json's "quantization_config" for m as transformers writes it (every key of
// BitsAndBytesConfig.to_dict()); compute dtype = dtype. Dense decoder modules, if any, are listed
// in llm_int8_skip_modules (with lm_head), else it is null as in transformers' own output.
// Linears of other quantized formats count as dense here (quant_layout never mixes them).
nlohmann::json quantization_config(const model::LlamaModel& m, at::ScalarType dtype);

// ---- loading ----

// Checks a config.json "quantization_config": bitsandbytes with load_in_4bit and uint8 quant
// storage passes; anything else throws a clear sllm::Error naming cfg_path.
void check_quantization_config(const nlohmann::json& qc, const std::string& cfg_path);

// Whether module M is stored in the 4-bit layout (has M.weight.quant_state.bitsandbytes__nf4 or
// __fp4). Throws if M.weight is uint8 without a quant state (an incomplete 4-bit module).
bool is_4bit(const io::SafetensorsSet& set, const std::string& module);

// Reads module M back into exactly what bitsandbytes stored (no re-quantization). expected_shape
// is the [out, in] the model needs. Every tensor's dtype, shape and size is checked against the
// quant state; anything inconsistent throws sllm::Error naming the file and the tensor.
quant::Nf4Weight read_module(const io::SafetensorsSet& set, const std::string& module,
                             const std::vector<int64_t>& expected_shape);

// "float32" | "bfloat16" | "float16" for a dense dtype (the names bitsandbytes writes).
std::string dtype_name(at::ScalarType dtype);

}  // namespace sllm::load::bnb
