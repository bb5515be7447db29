// Integer-quantized matmul kernels (CPU): group-wise int4 / int8 weights with a scale and zero per
// (row, group) -- GPTQ / AWQ / RTN -- and LLM.int8() (row-wise absmax int8 weights, activations
// quantized row-wise to int8, int32 accumulation). Raw pointers and sizes only; callers check
// arguments (src/ops/intq.cpp).
//
// IntQ format (src/ops/intq.h): W [out, in]; storage 4: byte (o, j) of a row holds element 2j in
// its LOW nibble and 2j + 1 in its high nibble (in is even); storage 8: one byte per element.
// Groups are [g * group_size, min(in, (g + 1) * group_size)) of every row (the last may be
// partial); scales / zeros are [out, groups] fp32 and w = (q - zero) * scale.
//
// Each entry point picks the widest path the CPU has at run time (__builtin_cpu_supports):
// AVX-512 (F + BW), else AVX2 + FMA, else a scalar loop that is always compiled. `IntQSimd`
// forces one (tests compare them); a forced path the CPU lacks falls back to the next narrower
// one. The SIMD paths need whole vectors per group (storage 4: in and group_size % 32 == 0 for
// AVX-512, % 16 for AVX2; storage 8: % 16 / % 8); other shapes run the next path that fits.
// The bodies are shared by all paths (intq_body.h, int8_body.h over vec.h's Vec<Isa>).
#pragma once

#include <cstdint>

namespace sllm::kernels::cpu {

enum class IntQSimd { kAuto, kScalar, kAvx2, kAvx512 };

bool intq_has_avx2();    // AVX2 + FMA
bool intq_has_avx512();  // AVX-512 F + BW (and AVX2)

struct IntQView {
  const uint8_t* q = nullptr;  // [out, in / 2] (storage 4) or [out, in] (storage 8)
  const float* scales = nullptr;
  const float* zeros = nullptr;
  int storage_bits = 4;  // 4 or 8
  int64_t group_size = 128, out = 0, in = 0;
  int64_t groups() const { return (in + group_size - 1) / group_size; }
};

// Rows [o0, o1) of the dense weight, (q - zero) * scale in fp32 (bit-exact on every path), into
// out [out, in] (pointer at row 0). perm: storage column j goes to column perm[j], or nullptr.
void intq_dequantize_f32(const IntQView& w, const int64_t* perm, int64_t o0, int64_t o1, float* out,
                         IntQSimd simd = IntQSimd::kAuto);

// Fused dequant-GEMV for outputs [o0, o1): y[o] = sum_i W[o, i] * x[i] (+ bias[o]), fp32; x in
// storage column order; y and bias point at output 0. AVX-512 storage 4 multiplies the exact
// dequantized weights (a 16-entry table of (k - zero) * scale per group); the other paths sum
// q * x per group and apply scale * (sum - zero * sum(x over the group)) once per group.
void intq_gemv_f32(const IntQView& w, const float* x, const float* bias, float* y, int64_t o0,
                   int64_t o1, IntQSimd simd = IntQSimd::kAuto);

// Fused dequant-GEMM for a few rows (batched decode): y[r, o] = sum_i W[o, i] * x[r, i]
// (+ bias[o]) for r < rows, o in [o0, o1); x [rows, in] and y [rows, out] row-major. Each chunk
// of weights is decoded once and feeds a register tile of rows: as exact dequantized values, or
// (storage 8 on AVX-512 for up to 4 rows) as q with the group-sum scaling of the GEMV.
// Bit-identical however [o0, o1) is split.
void intq_gemm_small_f32(const IntQView& w, int64_t rows, const float* x, const float* bias,
                         float* y, int64_t o0, int64_t o1, IntQSimd simd = IntQSimd::kAuto);

// ---- LLM.int8() ----

// 1 / 127^2: y = acc * (sx * scb) * kInt8Dequant.
constexpr float kInt8Dequant = 1.f / (127.f * 127.f);
// bitsandbytes' constants (int8_mm_dequant, int8_vectorwise_dequant): 6.200124e-05 is not quite
// 1 / 127^2 (6.2000124e-05, 1.8e-5 relative above), and outlier weights are q * scb * (1 / 127)
// rather than (q * scb) / 127. The `bnb` arguments below select them.
constexpr float kBnbInt8Dequant = 6.200124e-05f;
constexpr float kBnbInv127 = 7.874015718698502e-3f;
inline float int8_dequant_const(bool bnb) { return bnb ? kBnbInt8Dequant : kInt8Dequant; }

// Outlier input columns of x [rows, in]: those with any |x[r, j]| >= threshold (threshold > 0).
// Writes their indices ascending to idx (room for `in`) and returns how many.
int64_t int8_outlier_columns(const float* x, int64_t rows, int64_t in, float threshold,
                             int64_t* idx);

// Row-wise int8 quantization of rows [r0, r1) of x as bitsandbytes' int8_vectorwise_quant: the
// row absmax sx over the elements with |x| < threshold (all when threshold <= 0), q =
// round_half_even(x * (127 / sx)), the n_outliers columns in outlier_idx set to 0, rows with
// sx == 0 all 0. q [rows, in], sx [rows], pointers at row 0. bnb: 127 / sx as torch computes
// bitsandbytes' `127.0 / row_stats`, (1 / sx) * 127.
void int8_quantize_rows(const float* x, int64_t in, float threshold, const int64_t* outlier_idx,
                        int64_t n_outliers, int8_t* q, float* sx, int64_t r0, int64_t r1,
                        IntQSimd simd = IntQSimd::kAuto, bool bnb = false);

// y[r, o] = float(sum_i qx[r, i] * w[o, i]) * (sx[r] * scb[o]) * int8_dequant_const(bnb)
// (+ bias[o]) for r < rows, o in [o0, o1): exact int32 dot products (int8 sign-extended to int16,
// pairwise multiply-add). w [out, in], qx [rows, in], y [rows, out].
void int8_gemm_small(const int8_t* w, const float* scb, int64_t out, int64_t in, int64_t rows,
                     const int8_t* qx, const float* sx, const float* bias, float* y, int64_t o0,
                     int64_t o1, IntQSimd simd = IntQSimd::kAuto, bool bnb = false);

// The same epilogue on int32 products from elsewhere (an int8 GEMM): acc [rows, out] -> y for
// rows [r0, r1).
void int8_dequantize_acc(const int32_t* acc, int64_t out, const float* sx, const float* scb,
                         const float* bias, float* y, int64_t r0, int64_t r1, bool bnb = false);

// The outlier columns in floating point: y[r, o] += sum_k x[r, idx[k]] * (float(w[o, idx[k]]) *
// scb[o] / 127) for r < rows, o in [o0, o1); x [rows, in] fp32 (the original values). bnb: the
// weights as bitsandbytes dequantizes them (* kBnbInv127) and the sum over k added to y once,
// as its addmm does.
void int8_outlier_add(const int8_t* w, const float* scb, int64_t out, int64_t in, int64_t rows,
                      const float* x, const int64_t* idx, int64_t n_idx, float* y, int64_t o0,
                      int64_t o1, bool bnb = false);

}  // namespace sllm::kernels::cpu
