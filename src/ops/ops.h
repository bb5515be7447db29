// libtorch-facing ops: check tensors, dispatch by device/dtype to kernels, and keep a
// plain-libtorch reference (namespace ref) that the parity tests compare against.
#pragma once

#include <ATen/core/Tensor.h>

namespace sllm::ops {

// RMSNorm over the last dim; statistics in fp32, result in x's dtype (as transformers does).
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// Rotary embedding (rotate-half layout) applied to x [tokens, heads, head_dim];
// cos/sin are [tokens, head_dim/2] (fp32). Returns a new tensor.
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
// silu(gate) * up where gu = cat(gate, up) along the last dim.
at::Tensor silu_mul(const at::Tensor& gu);

namespace ref {
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor silu_mul(const at::Tensor& gu);
}  // namespace ref

}  // namespace sllm::ops
