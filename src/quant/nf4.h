// NF4 / FP4 weights in bitsandbytes' serialized layout (Linear4bit / transformers "bnb 4-bit").
// Quantization and dequantization are bit-exact with bitsandbytes' CPU path; format: docs/nf4.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sllm::quant {

struct Nf4Options {
  int64_t blocksize = 64;          // power of two, 64..4096
  std::string quant_type = "nf4";  // "nf4" | "fp4"
  bool double_quant = false;       // bnb compress_statistics / bnb_4bit_use_double_quant
  int64_t nested_blocksize = 256;  // bnb always uses 256
  std::string dtype = "float32";   // dtype of the original weight, recorded in the quant state
  // Mean of the absmax values for the double-quant offset. bnb takes torch's fp32 mean, whose
  // vectorised reduction order the libtorch layers reproduce by passing at::mean here; the
  // default (double sum, rounded) agrees with it on most tensors but not all.
  float (*mean)(const float* x, int64_t n) = nullptr;
};

// What bitsandbytes stores for one quantized weight `W`: W (packed bytes), W.absmax,
// W.quant_map, W.nested_absmax, W.nested_quant_map and W.quant_state.bitsandbytes__<type>.
struct Nf4Weight {
  std::vector<uint8_t> weight;          // (numel + 1) / 2 bytes, first element in the HIGH nibble
  std::vector<uint8_t> absmax_q;        // double quant: uint8 codes into nested_quant_map
  std::vector<float> absmax;            // no double quant: fp32 per-block absmax
  std::vector<float> quant_map;         // 16 code values
  std::vector<float> nested_absmax;     // double quant: fp32 absmax per 256 absmax values
  std::vector<float> nested_quant_map;  // double quant: 256-entry signed dynamic map
  float offset = 0.0f;                  // double quant: mean of the absmax values
  int64_t blocksize = 64;
  int64_t nested_blocksize = 256;
  std::string quant_type = "nf4";
  std::string dtype = "float32";
  std::vector<int64_t> shape;

  bool double_quant() const { return !absmax_q.empty(); }
  int64_t numel() const;
  int64_t num_blocks() const { return (numel() + blocksize - 1) / blocksize; }
};

Nf4Weight quantize_nf4(const float* w, std::vector<int64_t> shape, const Nf4Options& opt = {});

// Writes numel() fp32 values (bnb dequantize_4bit with dtype float32).
void dequantize(const Nf4Weight& q, float* out);

// The per-block absmax as dequantize uses it (undoes double quantization when present).
std::vector<float> dequantized_absmax(const Nf4Weight& q);

// The exact UTF-8 JSON bitsandbytes packs into the `quant_state.bitsandbytes__<type>` uint8
// tensor (QuantState.as_dict(packed=True), Python json.dumps formatting).
std::string quant_state_json(const Nf4Weight& q);

}  // namespace sllm::quant
