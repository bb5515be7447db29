// Integer weight quantization as the GPTQ / AWQ / RTN family and LLM.int8() store it, in plain
// arrays (no libtorch): the quantized values of one Hugging Face module, before any checkpoint
// packing (load/ writes and reads the GPTQ v1, AWQ GEMM and bitsandbytes int8 layouts).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sllm::quant {

// Group-wise integer weight: w[o, i] = (q[o, i] - zeros[o, g]) * scales[o, g], g = g_idx[i]
// (or i / group_size when g_idx is empty). Scales are rounded to fp16 precision because every
// checkpoint format stores them in fp16; zeros are integers in [0, 2^bits - 1] held as floats.
struct IntQWeight {
  int bits = 4;              // 2..8
  int64_t group_size = 128;  // input columns per group (the last may be partial); in: per channel
  int64_t out = 0, in = 0;
  bool sym = false;            // symmetric: every zero is 2^(bits-1)
  std::vector<uint8_t> q;      // [out * in] row-major, unpacked values in [0, 2^bits)
  std::vector<float> scales;   // [out * groups] row-major (o, g)
  std::vector<float> zeros;    // [out * groups]
  std::vector<int32_t> g_idx;  // [in] group of each input column (GPTQ act-order), or empty

  int64_t groups() const { return group_size > 0 ? (in + group_size - 1) / group_size : 1; }
  int group_of(int64_t i) const {
    return g_idx.empty() ? static_cast<int>(i / group_size) : g_idx[i];
  }
};

struct RtnOptions {
  int bits = 4;
  int64_t group_size = 128;  // <= 0: per output channel (the result has group_size == in)
  bool sym = false;
};

// Rounds x to the nearest fp16-representable float (round to nearest even).
float round_to_fp16(float x);

// Round-to-nearest quantization of a dense row-major [out, in] fp32 weight. Asymmetric:
// scale = (max - min) / (2^bits - 1) over each group (range widened to include 0),
// zero = round(-min / scale); symmetric: scale = 2 * absmax / (2^bits - 1), zero = 2^(bits-1)
// (GPTQ's convention). Scales are fp16-rounded before q is computed.
IntQWeight quantize_rtn(const float* w, int64_t out, int64_t in, const RtnOptions& opt);

// Quantizes one group's values with a given scale and zero (the inner step GPTQ and AWQ share):
// q = clamp(round(w / scale) + zero, 0, 2^bits - 1).
uint8_t quantize_value(float w, float scale, float zero, int bits);

// Dense [out, in] fp32 from an IntQWeight.
void dequantize(const IntQWeight& q, float* out);

// LLM.int8() weight (bitsandbytes Linear8bitLt): row-wise absmax int8,
// w[o, i] ~= q[o, i] * scb[o] / 127. Outlier input columns are handled at matmul time.
struct Int8Weight {
  int64_t out = 0, in = 0;
  std::vector<int8_t> q;   // [out * in]
  std::vector<float> scb;  // [out] row absmax (bitsandbytes "SCB")
};

// Bit for bit what bitsandbytes stores for a weight w: rows of fp16(w) scaled by 127 / absmax.
Int8Weight quantize_int8(const float* w, int64_t out, int64_t in);
void dequantize(const Int8Weight& q, float* out);

}  // namespace sllm::quant
