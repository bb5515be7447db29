// Which implementation each fused op runs for given inputs. The ops dispatch through these
// functions, and the parity tests assert that a case they compare with ops::ref does not run
// ops::ref itself (a comparison of the reference with itself could never fail).
#pragma once

#include <ATen/core/Tensor.h>

namespace sllm::ops {

enum class Impl { reference, cpu_kernel, cuda_kernel, fused_autograd };
const char* impl_name(Impl impl);

Impl rms_norm_impl(const at::Tensor& x, const at::Tensor& weight);
Impl rope_impl(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);
Impl silu_mul_impl(const at::Tensor& gu);

}  // namespace sllm::ops
