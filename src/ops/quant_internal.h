// Internal to src/ops: what the quantized-weight ops share between their dispatch files (nf4.cpp,
// intq.cpp: tensor checks, device choice), their CPU kernel drivers (nf4_cpu.cpp, intq_cpu.cpp)
// and their plain-libtorch references (nf4_ref.cpp, intq_ref.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "ops/intq.h"
#include "ops/nf4.h"

namespace sllm::ops::detail {

inline bool float_type(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

// x's sizes with the last one replaced by out.
inline std::vector<int64_t> out_sizes(const at::Tensor& x, int64_t out) {
  auto s = x.sizes().vec();
  s.back() = out;
  return s;
}

// x [rows, in] in storage column order (x[:, perm] for act-order weights).
inline at::Tensor storage_order(const at::Tensor& x2, const IntQTensors& w) {
  return w.perm.defined() ? x2.index_select(1, w.perm) : x2;
}

// Weight tensor checks (one clear error on a bad field).
void check(const Nf4Tensors& w);
void check(const IntQTensors& w);
void check(const Int8Tensors& w);

// ---- CPU (nf4_cpu.cpp, intq_cpu.cpp) ----

// [out, in] in dtype from the CPU kernels.
at::Tensor nf4_dequantize_cpu(const Nf4Tensors& w, at::ScalarType dtype);
// The fused CPU kernels for x with `rows` rows (CPU, floating point): the GEMV for one row, the
// multi-row GEMM for a few rows on AVX2+ CPUs; an undefined tensor when they do not take x.
at::Tensor nf4_linear_cpu(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias,
                          int64_t rows);

// Dense fp32 [out, in]; perm undone when undo_perm, else in storage column order.
at::Tensor intq_dequantize_cpu(const IntQTensors& w, bool undo_perm);
// x with `rows` rows (CPU, floating point, rows > 0): fused kernels for a few rows, else
// dequantize + GEMM.
at::Tensor intq_linear_cpu(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias,
                           int64_t rows);
// LLM.int8() on the CPU, x as intq_linear_cpu.
at::Tensor int8_linear_cpu(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias,
                           int64_t rows);

}  // namespace sllm::ops::detail
