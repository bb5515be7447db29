// How a Hugging Face directory stores its decoder Linears, for the loader and save_hf_dir:
// dense, bitsandbytes 4-bit (bnb_layout.h), GPTQ v1 / AWQ GEMM / bitsandbytes int8
// (intq_layout.h). One directory holds one quantization method (one quantization_config);
// modules it leaves dense are plain tensors. Details: docs/nf4.md, docs/quant_formats.md.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "load/intq_layout.h"
#include "model/linear.h"

namespace sllm::model {
class LlamaModel;
}

namespace sllm::load::quant_layout {

// ---- loading ----

// A directory's quantization method: config.json's "quantization_config", else a separate
// quantize_config.json (AutoGPTQ; quant_method defaults to gptq) or quant_config.json (older
// AutoAWQ; defaults to awq), else none.
struct Scheme {
  std::string method;     // "" | "bnb4" | "gptq" | "awq" | "int8"
  intq::IntQConfig intq;  // gptq / awq / int8
  std::string source;     // the file the config came from
};

// Throws a clear sllm::Error for configs sllm cannot read (other methods, GPTQ Marlin, AWQ GEMV,
// 3-bit GPTQ, ...).
Scheme read_scheme(const std::string& dir, const nlohmann::json& config,
                   const std::string& config_path);

// Whether module M is stored quantized in any supported layout.
bool is_quantized(const io::SafetensorsSet& set, const std::string& module);

// The decoder Linear fused from `modules` (full module paths, in output-row order; `parts` are
// their LinearPart names and `shapes` their [out, in]) as the directory stores it, or nullopt
// when they are dense. Quantized modules are taken bit for bit (never re-quantized); fused
// modules must all share one storage, and it must be the one the scheme names (bitsandbytes
// 4-bit and int8 tensors also load without a config). bias (fused, or undefined) goes to
// dtype/device. `where` names the directory in messages.
std::optional<model::Linear> read_linear(const io::SafetensorsSet& set, const Scheme& scheme,
                                         const std::string& where,
                                         const std::vector<std::string>& parts,
                                         const std::vector<std::string>& modules,
                                         const std::vector<std::vector<int64_t>>& shapes,
                                         at::Tensor bias, at::ScalarType dtype, at::Device device);

// ---- saving ----

// Every tensor of m in Hugging Face naming: dense tensors in dtype, quantized Linears split into
// their modules in their layout (nf4 -> bitsandbytes 4-bit, intq "gptq"/"rtn" -> GPTQ v1,
// "awq" -> AWQ GEMM, int8 -> bitsandbytes int8). Nothing is dequantized. An untied int8 lm_head
// is written as bitsandbytes int8 (lm_head.weight int8, lm_head.SCB) whatever the decoder's
// layout; other quantized heads are an error.
std::vector<std::pair<std::string, at::Tensor>> hf_tensors(const model::LlamaModel& m,
                                                           at::ScalarType dtype);

// config.json's "quantization_config" for m (null when every Linear is dense). Throws when m
// mixes quantization methods, or settings one config cannot describe (bits, group size, sym,
// int8 threshold differing between modules). With an int8 lm_head: in a bitsandbytes int8 config
// lm_head leaves llm_int8_skip_modules (and must share llm_int8_threshold); other configs get
// "sllm": {"lm_head": "int8"} (and the head must have threshold 0).
nlohmann::json quantization_config(const model::LlamaModel& m, at::ScalarType dtype);

}  // namespace sllm::load::quant_layout
