// NF4 / FP4 matmul kernels (CPU): fast dequantization of packed 4-bit weights, the fused
// dequant-GEMV of one-token decode and the fused dequant-GEMM of batched decode (a few rows of
// x). Raw pointers and sizes only; callers check arguments (src/ops/nf4.cpp). Format
// (docs/nf4.md): the weight [out, in] is flattened row-major, blocks of `blocksize` consecutive
// elements share one fp32 absmax (the last block may be partial), packed byte b holds element 2b
// in its HIGH nibble and 2b + 1 in its low nibble; value = code[q] * absmax[i / blocksize]. The
// kernels take any sizes (odd `in`, rows straddling blocks, a partial last block); only the work
// inside a block is vectorised.
//
// Each entry point picks the widest path the CPU has at run time (__builtin_cpu_supports):
// AVX-512 F + BW (the 16-entry code table in one register: one permute per 16 weights; the GEMV
// with in % 16 == 0 and blocksize % 16 == 0 also skips the nibble shuffle by permuting x once per
// call), else AVX2+FMA (two 8-entry permutes and a blend per 8 weights), else a scalar loop that
// is always compiled.
// `Nf4Simd` forces one (tests compare them); a forced path the CPU lacks falls back to the next
// narrower one. bf16 dequantization has no AVX-512 variant (kAvx512 runs the AVX2 one). The
// bodies are shared by all paths (nf4_body.h over vec.h's Vec<Isa>).
#pragma once

#include <cstdint>

namespace sllm::kernels::cpu {

enum class Nf4Simd { kAuto, kScalar, kAvx2, kAvx512 };

// Whether the AVX2+FMA / AVX-512 (F + BW) paths can run on this CPU.
bool nf4_has_avx2();
bool nf4_has_avx512();

// out[i] = code[q_i] * absmax[i / blocksize] for elements i in [e0, e1). `out` points at element
// 0 (the full output), so ranges can be split across threads. Bit-exact with
// dequantize_4bit (one fp32 multiply per element) on every path.
void nf4_dequantize_f32(const uint8_t* packed, const float* absmax, const float* code,
                        int64_t blocksize, int64_t e0, int64_t e1, float* out,
                        Nf4Simd simd = Nf4Simd::kAuto);
// The same rounded to bf16 (round to nearest even, NaN -> quiet NaN, as c10::BFloat16): raw
// bf16 bit patterns.
void nf4_dequantize_bf16(const uint8_t* packed, const float* absmax, const float* code,
                         int64_t blocksize, int64_t e0, int64_t e1, uint16_t* out,
                         Nf4Simd simd = Nf4Simd::kAuto);

// Fused dequant-GEMV for rows [o0, o1) of W [out, in]: y[o] = sum_i W[o, i] * x[i] (+ bias[o]
// when bias is not null), fp32 throughout. `y` and `bias` point at row 0. Within a block the
// products code[q] * x are summed first and scaled by the block's absmax once, so results differ
// from dequantize-then-matmul by fp32 rounding only.
void nf4_gemv_f32(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                  int64_t in, const float* x, const float* bias, float* y, int64_t o0, int64_t o1,
                  Nf4Simd simd = Nf4Simd::kAuto);

// Fused dequant-GEMM for a few rows of x (batched decode): y[r, o] = sum_i W[o, i] * x[r, i]
// (+ bias[o] when bias is not null) for rows r in [0, rows) and outputs o in [o0, o1), fp32
// throughout. x is [rows, in] and y [rows, out], both row-major and dense; y and bias point at
// output 0, so output ranges can be split across threads. Any `rows` (tiles of 8) and any shape.
// Every weight takes its exact dequantized value code[q] * absmax (the code table is scaled by
// the block's absmax once per block), so results differ from dequantize-then-matmul by fp32
// summation order only.
//   AVX-512, in % 16 == 0 and blocksize % 16 == 0: register tiles of 2 outputs x 8 rows; each
//     group of 16 weights is decoded once into a register and feeds 8 rows, each x vector feeds
//     both outputs; the weight stream is prefetched (few rows leave too little work per byte
//     to hide L3 / DRAM latency).
//   AVX2, in % 8 == 0 and blocksize % 8 == 0: 1 output x 8 rows, groups of 8 weights.
//   Other shapes (and the scalar path): each weight row is dequantized once into a row buffer,
//     then dotted with every row of x.
// Each output is computed the same way however [o0, o1) is split: results are bit-identical
// across thread counts.
void nf4_gemm_small_f32(const uint8_t* packed, const float* absmax, const float* code,
                        int64_t blocksize, int64_t out, int64_t in, int64_t rows, const float* x,
                        const float* bias, float* y, int64_t o0, int64_t o1,
                        Nf4Simd simd = Nf4Simd::kAuto);

}  // namespace sllm::kernels::cpu
