// Raw quantizers into GGML/GGUF block formats, the inverses of gguf_dequant.h: Q4_0, Q4_1 and Q8_0
// bit for bit as ggml's reference quantizers (quantize_row_*_ref) and the gguf Python package's
// quantize, and float32 -> float16 as ggml and numpy convert (round to nearest even). n is the
// number of input elements, a multiple of 32; dst receives n / 32 blocks. The file is compiled
// without floating-point contraction so that x * id + c rounds twice, as the references do.
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

}  // namespace sllm::kernels::cpu
