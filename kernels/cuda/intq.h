// CUDA integer-quantized weight kernels: group-wise int4 / int8 (GPTQ / AWQ / RTN) dequantization
// and fused dequant-GEMV, and LLM.int8() weight dequantization. Raw device pointers + sizes +
// stream (no libtorch here); each returns a cudaError_t value (0 on success).
// IntQ format (src/ops/intq.h): W [out, in]; storage 4: byte (o, j) of a row holds element 2j in
// its LOW nibble and 2j + 1 in its high nibble (in even); storage 8: one byte per element; scales
// and zeros fp32 [out, groups], groups of group_size columns (the last may be partial),
// w = (q - zero) * scale.
#pragma once

#include <cstdint>

#include "kernels/cuda/fused.h"  // DType

namespace sllm::kernels::cuda {

// dst[o, perm ? perm[j] : j] = (q[o, j] - zero) * scale, computed in fp32 and rounded to dtype
// (bit-exact with the CPU dequantization). perm: int64 [in] or null; dst aligned to two elements.
int intq_dequantize(const uint8_t* q, const float* scales, const float* zeros, const int64_t* perm,
                    int storage_bits, int64_t group_size, int64_t out, int64_t in, void* dst,
                    DType dtype, void* stream);

// The most rows of x intq_gemv takes.
constexpr int64_t kIntqGemvMaxRows = 8;

// y[r, o] = sum_j W[o, j] * x[r, j] (+ bias[o]) for r < rows (1..kIntqGemvMaxRows), o < out; x
// [rows, in] in storage column order, y [rows, out] and bias [out] (or null) contiguous in
// dtype; fp32 accumulation, one warp per output row. Any shape; in % 8 == 0 and
// group_size % 8 == 0 with 16-byte aligned x take the vectorised path.
int intq_gemv(const uint8_t* q, const float* scales, const float* zeros, int storage_bits,
              int64_t group_size, const void* x, const void* bias, void* y, int64_t rows,
              int64_t out, int64_t in, DType dtype, void* stream);

// dst[o, i] = q[o, i] * scb[o] / 127 (fp32, rounded to dtype).
int int8_dequantize(const int8_t* q, const float* scb, int64_t out, int64_t in, void* dst,
                    DType dtype, void* stream);

}  // namespace sllm::kernels::cuda
