// Autograd versions of the fused CPU fp32 ops: forward with the fused kernels, backward with
// fused kernels that save only the op's input (the composite references keep 3-5 temporaries
// per op alive until backward). Used by ops:: when autograd records on CPU fp32 tensors.
#pragma once

#include <ATen/core/Tensor.h>

namespace sllm::ops::detail {

at::Tensor rms_norm_autograd(const at::Tensor& x, const at::Tensor& weight, double eps);
at::Tensor rope_autograd(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
at::Tensor silu_mul_autograd(const at::Tensor& gu);

}  // namespace sllm::ops::detail
