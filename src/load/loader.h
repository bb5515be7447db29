// Turns a GGUF file or a Hugging Face model directory into a Model + Tokenizer, and
// writes a Hugging Face directory back (sllm convert). The only layer that maps file
// tensor names onto the decoder's structure.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace sllm::load {

struct LoadOptions {
  at::ScalarType dtype = at::kFloat;  // dense weights and activations
  at::Device device = at::kCPU;
  // "" keeps decoder Linears dense; "nf4" / "fp4" quantizes them while loading (bitsandbytes
  // layout; embeddings, norms and lm_head stay dense), one module at a time. Modules a Hugging
  // Face directory already stores quantized (bitsandbytes 4-bit or int8, GPTQ v1/v2, AWQ GEMM;
  // load/quant_layout.h) always load as they are stored, bit for bit, whatever these options say.
  std::string quantize;
  int64_t blocksize = 64;
  bool double_quant = true;
  // GGUF files: Linears stored as Q4_0 / Q4_1 / Q8_0 (and a tied output head in one of those)
  // stay in their blocks, as stored (CPU only; `quantize` and CUDA dequantize). true: every
  // tensor is dequantized to dtype.
  bool dequantize = false;
  // GGUF blocks kept as stored multiply int8 activations (per 32-element block); false: fp32.
  // Off by default: the int8 path does not yet give the default model's greedy answers.
  bool gguf_q8_act = false;
};

struct LoadedModel {
  std::shared_ptr<const model::LlamaModel> model;
  std::shared_ptr<const tok::Tokenizer> tokenizer;
  std::string path;
  std::string format;                                // "gguf" | "hf"
  std::map<std::string, int64_t> file_tensor_types;  // e.g. {"Q4_1": 210, "F32": 61}
  uint64_t file_bytes = 0;                           // tensor bytes as stored in the file
  std::string display_name;                          // general.name or directory name
  // GGUF: each tensor's stored GGML type by its Hugging Face name ("model.layers.0.self_attn.
  // q_proj.weight" -> "Q4_1"); empty for directories (their dtypes are in file_tensor_types).
  std::map<std::string, std::string> stored_types;
};

LoadedModel load_model(const std::string& path, const LoadOptions& opts = {});
// The tokenizer alone, reading no weights: a GGUF file's metadata (its tensor data may be absent)
// or a Hugging Face directory's tokenizer files (it may hold no safetensors).
std::shared_ptr<const tok::Tokenizer> load_tokenizer(const std::string& path);

// Writes config.json, model.safetensors, generation_config.json, tokenizer.json and
// tokenizer_config.json into out_dir atomically (built in a temp dir, then renamed). Dense tensors
// are written in dtype; quantized Linears in the layout their format maps to, with the
// quantization_config the exporting tool writes (load/quant_layout.h): NF4/FP4 -> transformers/
// bitsandbytes 4-bit, int8 -> bitsandbytes LLM.int8, GPTQ and RTN -> GPTQ v1, AWQ -> AWQ GEMM.
// A model mixing quantization methods cannot be saved (one quantization_config per directory).
struct SaveOptions {
  // Write every Linear dense (quantized ones dequantized to dtype), with no quantization_config.
  bool dequantize = false;
  // Keys merged into the quantization_config written (the quantizer's settings a Linear does
  // not record, e.g. GPTQ's damp_percent, static_groups, true_sequential). Ignored when dense.
  nlohmann::json quantization_config_extra;
};
void save_hf_dir(const LoadedModel& m, const std::string& out_dir, at::ScalarType dtype,
                 const SaveOptions& so = {});

// "fp32"|"float32", "bf16"|"bfloat16", "fp16"|"float16" -> dtype; clear error otherwise.
at::ScalarType parse_dtype(const std::string& name);
at::Device parse_device(const std::string& name);  // "cpu", "cuda", "cuda:1"

}  // namespace sllm::load
