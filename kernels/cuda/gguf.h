// CUDA kernels over GGUF blocks as stored (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: 32 elements per block,
// fp16 scales; Q4_K, Q5_K, Q6_K: 256-element super-blocks, run per 32-element sub-block; layouts
// in kernels/cpu/gguf_dequant.h): dequantization and a fused
// dequant-GEMV for a few rows of fp32 / fp16 / bf16 activations. Raw device pointers + sizes +
// stream (no libtorch here); each returns a cudaError_t value (0 on success).
#pragma once

#include <cstdint>

#include "kernels/cuda/fused.h"  // DType

namespace sllm::kernels::cuda {

// dst [out, in] in dtype: ggml's values (d * q, plus m for Q4_1 / Q5_1; K-quants: d * sc * q,
// minus dmin * m for Q4_K / Q5_K) computed in fp32.
int gguf_dequantize(const uint8_t* blocks, int type, int64_t out, int64_t in, void* dst,
                    DType dtype, void* stream);

// The most rows of x gguf_gemv takes.
constexpr int64_t kGgufGemvMaxRows = 8;

// y[r, o] = sum_j W[o, j] * x[r, j] (+ bias[o]) for r < rows (1..kGgufGemvMaxRows); x [rows,
// in], y [rows, out] and bias [out] (or null) contiguous in dtype; fp32 accumulation, one warp
// per output row, one block per lane at a time.
int gguf_gemv(const uint8_t* blocks, int type, const void* x, const void* bias, void* y,
              int64_t rows, int64_t out, int64_t in, DType dtype, void* stream);

}  // namespace sllm::kernels::cuda
