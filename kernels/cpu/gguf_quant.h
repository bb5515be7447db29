// Raw quantizers into GGML/GGUF block formats, the inverses of gguf_dequant.h: Q4_0, Q4_1, Q5_0,
// Q5_1 and Q8_0 bit for bit as ggml's reference quantizers (quantize_row_*_ref) and the gguf
// Python package's quantize; Q4_K, Q5_K and Q6_K as ggml's reference K-quantizers (what llama.cpp
// writes without an importance matrix); float32 -> float16 as ggml and numpy convert (round to
// nearest even). n is the number of input elements, a multiple of the block size (32, or 256 for
// the K types). The file is compiled without floating-point contraction so that x * id + c rounds
// twice, as the references do.
#pragma once

#include <cstdint>

namespace sllm::kernels::cpu {

// IEEE float -> half, round to nearest even (subnormals, overflow to inf, NaN kept quiet).
uint16_t fp32_to_fp16(float f);
void f32_to_f16(const float* src, uint16_t* dst, int64_t n);

// Q4_0: d = (the element of largest magnitude) / -8, q = min(15, trunc(x / d + 8.5)).
void quant_q4_0(const float* src, void* dst, int64_t n);
// Q4_1: d = (max - min) / 15, m = min, q = min(15, trunc((x - min) / d + 0.5)).
void quant_q4_1(const float* src, void* dst, int64_t n);
// Q8_0: d = max|x| / 127, q = round-half-away(x / d).
void quant_q8_0(const float* src, void* dst, int64_t n);
// Q5_0: d = (the element of largest magnitude) / -16, q = min(31, trunc(x / d + 16.5)).
void quant_q5_0(const float* src, void* dst, int64_t n);
// Q5_1: d = (max - min) / 31, m = min, q = min(31, trunc((x - min) / d + 0.5)).
void quant_q5_1(const float* src, void* dst, int64_t n);
// Q4_K / Q5_K: per 32-element sub-block a weighted least-squares scale and min (a search over
// candidate grids), both 6-bit against the super-block's fp16 d and dmin; 4 / 5-bit codes.
void quant_q4_k(const float* src, void* dst, int64_t n);
void quant_q5_k(const float* src, void* dst, int64_t n);
// Q6_K: per 16-element sub-block a symmetric scale (x^2-weighted search), int8 against the
// super-block's fp16 d; 6-bit codes.
void quant_q6_k(const float* src, void* dst, int64_t n);

// By GGML type id (0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 6 Q5_0, 7 Q5_1, 8 Q8_0, 12 Q4_K, 13 Q5_K,
// 14 Q6_K): the bytes of n elements (-1: a type not written), and the conversion (false: not
// written).
int64_t quant_bytes(uint32_t type, int64_t n);
bool quantize(uint32_t type, const float* src, void* dst, int64_t n);

}  // namespace sllm::kernels::cpu
