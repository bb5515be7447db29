// Plain-libtorch NF4 / FP4 references (code lookup by nibble, absmax repeated per block) that the
// parity tests compare the kernels against.
#include <ATen/ATen.h>

#include "ops/nf4.h"
#include "ops/quant_internal.h"

namespace sllm::ops::ref {

at::Tensor nf4_dequantize(const Nf4Tensors& w, at::ScalarType dtype) {
  detail::check(w);
  const int64_t n = w.out * w.in;
  auto p = w.packed.reshape({-1});
  auto q = at::stack({p.bitwise_right_shift(4), p.bitwise_and(0x0F)}, 1)
               .reshape({-1})
               .narrow(0, 0, n)
               .to(at::kLong);
  auto scale = w.absmax.repeat_interleave(w.blocksize).narrow(0, 0, n);
  return (w.code.index_select(0, q) * scale).reshape({w.out, w.in}).to(dtype);
}

at::Tensor nf4_linear(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias) {
  return at::linear(x, ref::nf4_dequantize(w, x.scalar_type()), bias);
}

}  // namespace sllm::ops::ref
