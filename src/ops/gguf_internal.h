// Internal to src/ops: what the GGUF block ops share between their dispatch file (gguf.cpp), the
// CPU driver (gguf_cpu.cpp) and the reference (gguf_ref.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include "ops/gguf.h"

namespace sllm::ops::detail {

void check(const GgufTensors& w);
// Dense fp32 [out, in] from the CPU kernels.
at::Tensor gguf_dequantize_cpu(const GgufTensors& w);
// x with `rows` rows (CPU, floating point, rows > 0): fused kernels for a few rows, else
// dequantized tiles + at::mm.
at::Tensor gguf_linear_cpu(const at::Tensor& x, const GgufTensors& w, const at::Tensor& bias,
                           int64_t rows);

}  // namespace sllm::ops::detail
