// Plain-libtorch references of the fused ops, the fallback for other devices / dtypes and what
// the parity tests compare the kernels against.
#include <ATen/ATen.h>

#include "ops/ops.h"

namespace sllm::ops {

namespace ref {
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  auto xf = x.to(at::kFloat);
  auto var = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * at::rsqrt(var + eps)).to(x.scalar_type());
}
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  auto c = cos.unsqueeze(1).to(x.scalar_type());
  auto s = sin.unsqueeze(1).to(x.scalar_type());
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return at::cat({x1 * c - x2 * s, x2 * c + x1 * s}, -1);
}
at::Tensor silu_mul(const at::Tensor& gu) {
  auto parts = gu.chunk(2, -1);
  return at::silu(parts[0]) * parts[1];
}
}  // namespace ref

}  // namespace sllm::ops
