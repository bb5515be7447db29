// Activation (gradient) checkpointing: run fn without keeping its intermediate activations and
// recompute them during backward. The RNG state is replayed so dropout masks match.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

namespace sllm::ops {

// y = fn(x). Parameters fn closes over receive their gradients during the recomputation.
// Without autograd recording (or when x needs no grad and fn has no parameters) it is fn(x).
at::Tensor checkpoint(const std::function<at::Tensor(const at::Tensor&)>& fn, const at::Tensor& x);

}  // namespace sllm::ops
