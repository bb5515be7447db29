// Plain-libtorch references of the integer-quantized ops that the parity tests compare the
// kernels against.
#include <ATen/ATen.h>

#include "ops/intq.h"
#include "ops/quant_internal.h"

namespace sllm::ops {

using detail::check;
using detail::out_sizes;

namespace ref {

at::Tensor intq_dequantize(const IntQTensors& w, at::ScalarType dtype) {
  check(w);
  at::Tensor q = w.qweight.to(at::kLong);
  if (w.storage_bits() == 4)
    q = at::stack({q.bitwise_and(0x0F), q.bitwise_right_shift(4)}, -1).reshape({w.out, w.in});
  auto s = w.scales.repeat_interleave(w.group_size, 1).narrow(1, 0, w.in);
  auto z = w.zeros.repeat_interleave(w.group_size, 1).narrow(1, 0, w.in);
  auto d = (q.to(at::kFloat) - z) * s;  // storage column order
  if (w.perm.defined()) d = at::zeros_like(d).index_copy_(1, w.perm, d);
  return d.to(dtype);
}

at::Tensor intq_linear(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias) {
  return at::linear(x, ref::intq_dequantize(w, x.scalar_type()), bias);
}

at::Tensor int8_dequantize(const Int8Tensors& w, at::ScalarType dtype) {
  check(w);
  return (w.q.to(at::kFloat) * w.scb.unsqueeze(1) / 127.f).to(dtype);
}

// bitsandbytes' int8_vectorwise_quant + int8 matmul + mm_dequant, with exact products in fp64.
// w.bnb: x cast to fp16 before quantizing, 127 / sx as torch computes it there (reciprocal times
// 127), and bitsandbytes' constants 6.200124e-05 (its int8_mm_dequant) and 7.874015718698502e-3
// (its int8_vectorwise_dequant, on outlier columns).
at::Tensor int8_linear(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias) {
  check(w);
  const int64_t rows = x.numel() / w.in;
  auto xf = x.reshape({rows, w.in}).to(at::kFloat);
  auto xs = w.bnb ? xf.to(at::kHalf).to(at::kFloat) : xf;
  auto xi = xs;
  at::Tensor cols;
  if (w.threshold > 0) {
    auto big = xs.abs() >= w.threshold;
    cols = big.any(0).nonzero().reshape({-1});
    xi = xs.masked_fill(big, 0.0);  // outlier elements leave the row absmax
  }
  auto sx = xi.abs().amax(1, true);
  auto k = w.bnb ? sx.reciprocal() * 127.f : at::full_like(sx, 127.f) / sx;
  auto inv = at::where(sx > 0, k, at::zeros_like(sx));
  auto xq = at::round(xi * inv);
  if (cols.defined() && cols.numel() > 0) xq.index_fill_(1, cols, 0.0);
  auto acc = at::matmul(xq.to(at::kDouble), w.q.to(at::kDouble).t());  // exact integers
  const double dq = w.bnb ? static_cast<double>(6.200124e-05f) : 1.0 / (127.0 * 127.0);
  auto y = acc * sx.to(at::kDouble) * w.scb.to(at::kDouble).unsqueeze(0) * dq;
  if (cols.defined() && cols.numel() > 0) {
    auto wd = w.bnb ? w.q.to(at::kFloat) * w.scb.unsqueeze(1) * 7.874015718698502e-3f
                    : ref::int8_dequantize(w, at::kFloat);
    y = y + at::matmul(xf.index_select(1, cols).to(at::kDouble),
                       wd.index_select(1, cols).to(at::kDouble).t());
  }
  if (bias.defined()) y = y + bias.reshape({w.out}).to(at::kDouble);
  return y.to(x.scalar_type()).reshape(out_sizes(x, w.out));
}

}  // namespace ref

}  // namespace sllm::ops
