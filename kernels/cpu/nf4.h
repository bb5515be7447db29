// Blockwise 4-bit (NF4 / FP4) and 8-bit "dynamic" quantization of fp32 data, bit-exact with
// bitsandbytes' CPU path (quantize_4bit / dequantize_4bit / quantize_blockwise, bnb 0.50.2).
// Raw pointers and sizes only; callers check arguments (see src/quant/nf4.h). Format: docs/nf4.md.
#pragma once

#include <cstdint>

namespace sllm::kernels::cpu {

enum class Quant4Type { kNf4, kFp4 };

// The 16 code values, indexed by the 4-bit code (bnb's get_4bit_type("nf4"|"fp4")).
const float* quant4_code(Quant4Type type);

// Number of blocks / packed bytes for n elements.
inline int64_t quant_num_blocks(int64_t n, int64_t blocksize) {
  return (n + blocksize - 1) / blocksize;
}
inline int64_t quant4_packed_bytes(int64_t n) { return (n + 1) / 2; }

// x[n] -> packed[(n+1)/2] (first element of each pair in the HIGH nibble; an odd tail is padded
// with the code of 0.0) and absmax[ceil(n/blocksize)] (per-block max |x|).
void quantize_4bit(const float* x, int64_t n, int64_t blocksize, Quant4Type type, uint8_t* packed,
                   float* absmax);

// packed + absmax -> out[n]: out[i] = code[q_i] * absmax[i / blocksize] (fp32).
void dequantize_4bit(const uint8_t* packed, const float* absmax, int64_t n, int64_t blocksize,
                     Quant4Type type, float* out);

// bnb's create_dynamic_map(signed, max_exponent_bits, total_bits) (default signed=True, 7, 8):
// writes 2^total_bits sorted floats into out.
// Scalar re-derivation: within 2 ulp of bnb per entry (42 of 256 entries differ by 1-2 ulp,
// from torch.linspace's vectorized rounding); bnb_dynamic_map() is the bit-exact table to quantize
// with.
void create_dynamic_map(float* out, bool is_signed = true, int max_exponent_bits = 7,
                        int total_bits = 8);
const float* bnb_dynamic_map();  // 256 floats, bit-exact with bnb's nested_quant_map

// 8-bit blockwise quantization against a sorted 256-entry code, as bnb 0.50.2's CPU
// quantize_blockwise: absmax[b] = max |x| of the block; q = lut[round((x/absmax + 1) / 2 * 65535)]
// with lut[i] = the number of code midpoints below -1 + 2i/65535 (nearly, not exactly, the
// nearest code: docs/nf4.md).
void quantize_blockwise_8bit(const float* code256, const float* x, int64_t n, int64_t blocksize,
                             uint8_t* q, float* absmax);
void dequantize_blockwise_8bit(const float* code256, const uint8_t* q, const float* absmax,
                               int64_t n, int64_t blocksize, float* out);

// fp32 mean as used for the double-quant offset: sum accumulated in double, rounded to fp32,
// divided by n in fp32.
float mean_f32(const float* x, int64_t n);

}  // namespace sllm::kernels::cpu
