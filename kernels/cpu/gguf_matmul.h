// Fused matmul kernels over GGUF blocks as the file stores them (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: 32
// elements per block, fp16 scales; Q4_K, Q5_K, Q6_K: 256-element super-blocks whose 32-element
// sub-blocks carry their own scales; layouts in gguf_dequant.h). Raw pointers and sizes; callers
// check arguments (src/ops/gguf.cpp).
//
// W [out, in] is `out` rows of whole blocks each; y[r, o] = sum_i W[o, i] * x[r, i] (+ bias[o])
// for r < rows and o in [o0, o1), y [rows, out] row-major, pointers at row / output 0. Two
// activation paths:
//  - q8: x quantized per 32-element block to int8 (gguf_quantize_q8), the block dot products in
//    int32 (AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw + vpmaddwd, or scalar; all exact), scaled by
//    the weight scale times the activation scale (K-quants: each 32-element sub-block's scale
//    d * sc and minimum dmin * m; Q6_K's 16-element halves each with their own scale);
//  - f32: each weight block decoded to fp32 (exactly as the dequantizers) and multiplied with x.
// Each weight block is read once for up to 4 rows of x (larger `rows` run in tiles of 4); on
// AVX-512, 8 or more rows decode 32 weight rows at a time once (to int8 on the q8 path, fp32 on
// the f32 path) and multiply them with every row of x in register tiles (prefill).
// Entry points pick the widest ISA the CPU has at run time; GgufSimd forces one (tests compare
// them; a forced ISA the CPU lacks falls back to the next narrower one). kAvx512 needs
// AVX-512 F + BW + VL + VNNI.
#pragma once

#include <cstdint>

namespace sllm::kernels::cpu {

enum class GgufSimd { kAuto, kScalar, kAvx2, kAvx512 };

bool gguf_has_avx2();    // AVX2 + FMA + F16C
bool gguf_has_avx512();  // AVX-512 F + BW + VL + VNNI (and AVX2)

struct GgufView {
  const uint8_t* blocks = nullptr;  // [out, in / block_elems() * block_bytes()]
  // GGML type id: 2 (Q4_0), 3 (Q4_1), 6 (Q5_0), 7 (Q5_1), 8 (Q8_0), 12 (Q4_K), 13 (Q5_K), 14 (Q6_K)
  int type = 0;
  int64_t out = 0, in = 0;  // in % block_elems() == 0
  int64_t block_elems() const { return type >= 12 ? 256 : 32; }
  int64_t block_bytes() const {
    switch (type) {
      case 2:
        return 18;
      case 3:
        return 20;
      case 6:
        return 22;
      case 7:
        return 24;
      case 12:
        return 144;
      case 13:
        return 176;
      case 14:
        return 210;
      default:
        return 34;
    }
  }
  int64_t row_bytes() const { return in / block_elems() * block_bytes(); }
};

// x [n] (n % 32 == 0) per 32-element block b: d[b] = max|x| / 127, q = round(x / d) (half away
// from zero, as ggml's quantize_row_q8_0; a block of zeros gives d = 0, q = 0) and
// s[b] = d[b] * sum(q) (the term of Q4_1's and Q5_1's minimum).
void gguf_quantize_q8(const float* x, int64_t n, int8_t* q, float* d, float* s);

// x [n] rounded through the same int8 blocks: out = d[b] * q (the values the q8 path multiplies,
// for multiplying many rows with a dense GEMM instead).
void gguf_round_q8(const float* x, int64_t n, float* out);

// Rows [o0, o1) of W dequantized to fp32 into out [out, in] (pointer at row 0): ggml's values.
void gguf_dequantize_rows(const GgufView& w, int64_t o0, int64_t o1, float* out);

// q8 path: qx [rows, in] int8, dx / sx [rows, in / 32] from gguf_quantize_q8.
void gguf_gemm_q8(const GgufView& w, int64_t rows, const int8_t* qx, const float* dx,
                  const float* sx, const float* bias, float* y, int64_t o0, int64_t o1,
                  GgufSimd simd = GgufSimd::kAuto);

// f32 path: x [rows, in] fp32.
void gguf_gemm_f32(const GgufView& w, int64_t rows, const float* x, const float* bias, float* y,
                   int64_t o0, int64_t o1, GgufSimd simd = GgufSimd::kAuto);

}  // namespace sllm::kernels::cpu
