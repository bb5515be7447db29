// Turns a GGUF file or a Hugging Face model directory into a Model + Tokenizer, and
// writes a Hugging Face directory back (sllm convert). The only layer that maps file
// tensor names onto the decoder's structure.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <map>
#include <memory>
#include <string>

#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace sllm::load {

struct LoadOptions {
  at::ScalarType dtype = at::kFloat;  // dense weights and activations
  at::Device device = at::kCPU;
  // "" keeps decoder Linears dense; "nf4" / "fp4" quantizes them while loading (bitsandbytes
  // layout; embeddings, norms and lm_head stay dense), one module at a time. Modules a Hugging
  // Face directory already stores in bitsandbytes' 4-bit layout always load as they are stored
  // (4-bit, bit for bit, whatever these options say).
  std::string quantize;
  int64_t blocksize = 64;
  bool double_quant = true;
};

struct LoadedModel {
  std::shared_ptr<const model::LlamaModel> model;
  std::shared_ptr<const tok::Tokenizer> tokenizer;
  std::string path;
  std::string format;                                // "gguf" | "hf"
  std::map<std::string, int64_t> file_tensor_types;  // e.g. {"Q4_1": 210, "F32": 61}
  uint64_t file_bytes = 0;                           // tensor bytes as stored in the file
  std::string display_name;                          // general.name or directory name
};

LoadedModel load_model(const std::string& path, const LoadOptions& opts = {});

// Writes config.json, model.safetensors, generation_config.json, tokenizer.json and
// tokenizer_config.json into out_dir atomically (built in a temp dir, then renamed). Dense tensors
// are written in dtype; 4-bit Linears in the transformers/bitsandbytes 4-bit layout with its
// quantization_config (load/bnb_layout.h), so transformers loads the directory as a bnb model.
void save_hf_dir(const LoadedModel& m, const std::string& out_dir, at::ScalarType dtype);

// "fp32"|"float32", "bf16"|"bfloat16", "fp16"|"float16" -> dtype; clear error otherwise.
at::ScalarType parse_dtype(const std::string& name);
at::Device parse_device(const std::string& name);  // "cpu", "cuda", "cuda:1"

}  // namespace sllm::load
