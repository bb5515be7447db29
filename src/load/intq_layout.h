// Integer-quantized checkpoint layouts, both ways, one Hugging Face module at a time:
//  - GPTQ v1 (AutoGPTQ / GPTQModel, checkpoint_format "gptq"; "gptq_v2" is read too):
//      M.qweight I32 [in * bits / 32, out]   M.qzeros I32 [groups, out * bits / 32] (zero - 1)
//      M.scales  F16 [groups, out]           M.g_idx  I32 [in]     M.bias F16 [out] (if any)
//  - AWQ GEMM (AutoAWQ WQLinear_GEMM, version "gemm"), 4 bits:
//      M.qweight I32 [in, out / 8]  M.qzeros I32 [groups, out / 8]  M.scales F16 [groups, out]
//      M.bias F16 [out] (if any); nibbles in the order 0 2 4 6 1 3 5 7
//  - bitsandbytes LLM.int8 (transformers load_in_8bit + save_pretrained):
//      M.weight I8 [out, in]   M.SCB F32 [out]   M.weight_format U8 [] (0: row-major)
//      M.bias in the dense dtype (written with the dense tensors)
// plus the config.json "quantization_config" each tool writes. Packing: quant/intq_pack.h;
// details and sources: docs/quant_formats.md.
#pragma once

#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "quant/intq.h"

namespace sllm::load::intq {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// What a quantization_config says about the stored integer modules (the parts sllm needs).
struct IntQConfig {
  std::string method;            // "gptq" | "awq" | "int8"
  int bits = 4;                  // gptq 2/4/8, awq 4, int8 8
  int64_t group_size = 128;      // -1: one group per output row (per channel)
  bool sym = true;               // gptq
  bool desc_act = false;         // gptq (informative: the g_idx tensor is what counts)
  bool gptq_v1 = true;           // gptq: checkpoint_format "gptq" (zero - 1) or "gptq_v2"
  std::string made_by = "gptq";  // gptq: "rtn" when sllm wrote the directory from RTN
  double threshold = 6.0;        // int8: llm_int8_threshold
  std::string source;            // the file the config came from (for messages)
};

// ---- saving ----

// One module's tensors in the order the exporters' state dicts hold them. bias: [out] or
// undefined; GPTQ and AWQ store it in fp16 (their QuantLinear buffers are fp16), so a bias is
// rounded to fp16 here. q must be packable: bits 2/4/8 (GPTQ) or 4 (AWQ), in and out multiples
// of the values per int32, fp16-exact scales, integer zeros; g_idx (GPTQ) is written as given,
// or as i / group_size when empty.
NamedTensors gptq_module_tensors(const std::string& module, const quant::IntQWeight& q,
                                 const at::Tensor& bias);
NamedTensors awq_module_tensors(const std::string& module, const quant::IntQWeight& q,
                                const at::Tensor& bias);
// weight, SCB, weight_format (bitsandbytes' Linear8bitLt._save_to_state_dict); the bias is a
// plain dense tensor written by the caller.
NamedTensors int8_module_tensors(const std::string& module, const quant::Int8Weight& q);

// config.json "quantization_config" objects. group_size -1 means per channel.
// GPTQ: AutoGPTQ's BaseQuantizeConfig.to_dict() keys, plus GPTQModel-style "meta" naming sllm
// and made_by ("gptq" | "rtn"). quantized_in_block: empty when every decoder Linear is
// quantized, else the module names below "model.layers.N." that are (the same in every layer),
// written as optimum's modules_in_block_to_quantize.
nlohmann::json gptq_config(int bits, int64_t group_size, bool sym, bool desc_act,
                           const std::string& made_by,
                           const std::vector<std::string>& quantized_in_block);
// AWQ: AutoAWQ's to_transformers_dict(); zero_point is always true (GEMM stores zeros).
nlohmann::json awq_config(int64_t group_size, const std::vector<std::string>& dense_modules);
// bitsandbytes 8-bit: every key of BitsAndBytesConfig(load_in_8bit=True).to_dict().
nlohmann::json int8_config(double threshold, const std::vector<std::string>& dense_modules);

// ---- loading ----

// Parses a quantization_config whose quant_method is gptq or awq, or bitsandbytes with
// load_in_8bit; anything sllm cannot read is a clear sllm::Error naming `source`.
IntQConfig parse_config(const nlohmann::json& qc, const std::string& source);

// Whether module M holds GPTQ/AWQ tensors (M.qweight) / LLM.int8 tensors (M.SCB). is_int8 throws
// if M.weight is int8 without M.SCB.
bool has_qweight(const io::SafetensorsSet& set, const std::string& module);
bool is_int8(const io::SafetensorsSet& set, const std::string& module);

// Reads module M ([out, in] = expected_shape) exactly as stored. Every dtype and shape is
// checked against the config and the model, every value range too (g_idx, zeros of a symmetric
// config, finite scales); anything inconsistent throws sllm::Error naming the file and tensor.
// sllm also needs in % group_size == 0 and act-order groups of equal size (g_idx).
quant::IntQWeight read_gptq(const io::SafetensorsSet& set, const std::string& module,
                            const std::vector<int64_t>& expected_shape, const IntQConfig& c);
// AWQ has no sym flag; q.sym is set when every zero is 8 (what a symmetric quantizer stores).
quant::IntQWeight read_awq(const io::SafetensorsSet& set, const std::string& module,
                           const std::vector<int64_t>& expected_shape, const IntQConfig& c);
quant::Int8Weight read_int8(const io::SafetensorsSet& set, const std::string& module,
                            const std::vector<int64_t>& expected_shape);

}  // namespace sllm::load::intq
