// CUDA NF4 / FP4 kernels: dequantization and the fused dequant-GEMV of decode. Raw device
// pointers + sizes + stream (no libtorch here); each returns a cudaError_t value (0 on success).
// Format (docs/nf4.md): W [out, in] flattened row-major, blocks of `blocksize` consecutive
// elements with one fp32 absmax each (the last may be partial), packed byte b holds element 2b in
// its HIGH nibble and 2b + 1 in its low nibble, value = code[q] * absmax[i / blocksize].
#pragma once

#include <cstdint>

#include "kernels/cuda/fused.h"  // DType

namespace sllm::kernels::cuda {

// out[i] = code[q_i] * absmax[i / blocksize] for i in [0, n), computed in fp32 and rounded to
// dtype. packed: (n + 1) / 2 bytes, absmax: ceil(n / blocksize) fp32, code: 16 fp32; out must be
// aligned to two elements (any fresh allocation is).
int nf4_dequantize(const uint8_t* packed, const float* absmax, const float* code, int64_t n,
                   int64_t blocksize, void* out, DType dtype, void* stream);

// The most rows of x nf4_gemv takes (decode: a few sequences, one token each).
constexpr int64_t kNf4GemvMaxRows = 8;

// y[r, o] = sum_i W[o, i] * x[r, i] (+ bias[o]) for r < rows (1..kNf4GemvMaxRows), o < out; x
// [rows, in], y [rows, out] and bias [out] (or null) contiguous in dtype; fp32 accumulation, one
// warp per output row. Any in / blocksize; in % 8 == 0 with a power-of-two blocksize >= 8 and
// 16-byte aligned x takes the vectorised path.
int nf4_gemv(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
             const void* x, const void* bias, void* y, int64_t rows, int64_t out, int64_t in,
             DType dtype, void* stream);

}  // namespace sllm::kernels::cuda
