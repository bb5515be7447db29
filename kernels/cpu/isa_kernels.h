// The per-ISA entry points of the NF4 and int4 / int8 matmul kernels, one specialisation per
// Isa, defined by isa_scalar.cpp, isa_avx2.cpp and isa_avx512.cpp from the shared bodies
// (nf4_body.h, intq_body.h, int8_body.h). nf4_matmul.cpp and intq_matmul.cpp pick one at run
// time; arguments as the public functions in nf4_matmul.h / intq_matmul.h.
#pragma once

#include <cstdint>

#include "kernels/cpu/intq_matmul.h"
#include "kernels/cpu/vec.h"

namespace sllm::kernels::cpu::isa {

// ---- NF4 (nf4_body.h) ----
// out points at element 0.
template <Isa I>
void nf4_dequant_f32(const uint8_t* packed, const float* absmax, const float* code,
                     int64_t blocksize, int64_t e0, int64_t e1, float* out);
// AVX-512 runs the AVX2 one.
template <Isa I>
void nf4_dequant_bf16(const uint8_t* packed, const float* absmax, const float* code,
                      int64_t blocksize, int64_t e0, int64_t e1, uint16_t* out);
template <Isa I>
void nf4_gemv(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
              int64_t in, const float* x, const float* bias, float* y, int64_t o0, int64_t o1);
template <Isa I>
void nf4_gemm_small(const uint8_t* packed, const float* absmax, const float* code,
                    int64_t blocksize, int64_t out, int64_t in, int64_t rows, const float* x,
                    const float* bias, float* y, int64_t o0, int64_t o1);

// ---- group-wise int4 / int8 (intq_body.h); SIMD ISAs need shapes that `fit` them ----
template <Isa I>
void intq_dequant(const IntQView& w, const int64_t* perm, int64_t o0, int64_t o1, float* out);
template <Isa I>
void intq_gemv(const IntQView& w, const float* x, const float* bias, float* y, int64_t o0,
               int64_t o1);
template <Isa I>
void intq_gemm_small(const IntQView& w, int64_t rows, const float* x, const float* bias, float* y,
                     int64_t o0, int64_t o1);

// ---- LLM.int8() (int8_body.h); scalar and avx2 only except int8_gemm ----
template <Isa I>
float int8_row_absmax(const float* x, int64_t in, float threshold);
template <Isa I>
void int8_quantize_row(const float* x, int64_t in, float inv, int8_t* q);
template <Isa I>
void int8_column_absmax(const float* x, int64_t in, float* m);
// x16: qx sign-extended to int16; dq: the dequantization constant (int8_dequant_const).
template <Isa I>
void int8_gemm(const int8_t* w, const float* scb, int64_t out, int64_t in, int64_t rows,
               const int16_t* x16, const int8_t* qx, const float* sx, const float* bias, float* y,
               int64_t o0, int64_t o1, float dq);

// ---- run-time choice (nf4_matmul.cpp) ----
// Whether this CPU runs the AVX2 + FMA / AVX-512 (F + BW) instantiations.
bool cpu_has_avx2();
bool cpu_has_avx512();
// The widest ISA the CPU has, or the one a test forces (Simd: Nf4Simd or IntQSimd); a forced ISA
// the CPU lacks falls back to the next narrower one.
template <class Simd>
Isa pick(Simd simd) {
  if (simd == Simd::kScalar) return Isa::scalar;
  if (simd != Simd::kAvx2 && cpu_has_avx512()) return Isa::avx512;
  return cpu_has_avx2() ? Isa::avx2 : Isa::scalar;
}

// ---- scratch buffers and x layouts, plain code in the dispatch files ----
// A thread-local buffer of at least n floats; `slot` separates buffers used at the same time.
float* scratch(int slot, int64_t n);
// x for the int4 SIMD decoders, which produce the even elements of a chunk of weights in one
// vector and the odd ones in the next: each chunk of `chunk` values becomes its even-indexed
// values followed by its odd-indexed ones. n values (n % chunk == 0).
const float* intq_split_x(const float* x, int64_t n, int chunk);
// Sum of x over each group (the zero-point term of the group-sum kernels): [rows, groups].
const float* intq_group_sums(const IntQView& w, const float* x, int64_t rows);

}  // namespace sllm::kernels::cpu::isa
