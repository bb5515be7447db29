// Plain-libtorch reference of the GGUF block ops: blocks decoded with tensor ops from the
// layouts (not the kernels' loops), q8 activations quantized with tensor ops, products in fp64.
#include <ATen/ATen.h>

#include "ops/gguf.h"
#include "ops/gguf_internal.h"
#include "ops/quant_internal.h"

namespace sllm::ops::ref {
namespace {

// Bytes [off, off + n) of every block: [out, blocks, n].
at::Tensor field(const GgufTensors& w, int64_t block_bytes, int64_t off, int64_t n) {
  return w.blocks.reshape({w.out, w.in / 32, block_bytes}).narrow(2, off, n).contiguous();
}

at::Tensor half_field(const GgufTensors& w, int64_t block_bytes, int64_t off) {
  return field(w, block_bytes, off, 2).view(at::kHalf).to(at::kFloat);  // [out, blocks, 1]
}

// The integer weights [out, blocks, 32] in element order (Q4_1: 0..15, Q5_1: 0..31, Q4_0: -8..7,
// Q5_0: -16..15, Q8_0: int8), the scales d and (Q4_1, Q5_1) the minima m, [out, blocks, 1] fp32.
void decode(const GgufTensors& w, at::Tensor& q, at::Tensor& d, at::Tensor& m) {
  if (w.type == 8) {
    d = half_field(w, 34, 0);
    q = field(w, 34, 2, 32).view(at::kChar).to(at::kFloat);
    return;
  }
  const bool five = w.type == 6 || w.type == 7, with_min = w.type == 3 || w.type == 7;
  const int64_t bb = w.row_bytes() / (w.in / 32);
  const int64_t qh_off = with_min ? 4 : 2, qs_off = qh_off + (five ? 4 : 0);
  d = half_field(w, bb, 0);
  if (with_min) m = half_field(w, bb, 2);
  auto qs = field(w, bb, qs_off, 16).to(at::kInt);
  auto qi = at::cat({qs.bitwise_and(0x0F), qs.bitwise_right_shift(4)}, 2);  // [out, blocks, 32]
  if (five) {
    // bit j of the little-endian 32-bit qh is element j's fifth bit
    auto bytes = field(w, bb, qh_off, 4).to(at::kInt);  // [out, blocks, 4]
    auto bits = bytes.unsqueeze(3).bitwise_right_shift(at::arange(8, at::kInt)).bitwise_and(1);
    qi = qi + bits.reshape({w.out, w.in / 32, 32}) * 16;
  }
  q = qi.to(at::kFloat);
  if (w.type == 2) q = q - 8.f;
  if (w.type == 6) q = q - 16.f;
}

}  // namespace

at::Tensor gguf_dequantize(const GgufTensors& w, at::ScalarType dtype) {
  detail::check(w);
  at::Tensor q, d, m;
  decode(w, q, d, m);
  auto v = d * q;  // ggml: d * q (+ m), each op rounded in fp32
  if (m.defined()) v = v + m;
  return v.reshape({w.out, w.in}).to(dtype);
}

at::Tensor gguf_linear(const at::Tensor& x, const GgufTensors& w, const at::Tensor& bias) {
  if (!w.q8_act)
    return at::linear(x, ref::gguf_dequantize(w, x.scalar_type()),
                      bias.defined() ? bias.to(x.scalar_type()) : bias);
  detail::check(w);
  const int64_t rows = x.numel() / w.in, nb = w.in / 32;
  auto xb = x.reshape({rows, nb, 32}).to(at::kFloat);
  // ggml's quantize_row_q8_0 with an fp32 scale: d = amax / 127, q = round(x * (1 / d)), halves
  // away from zero (in fp64, exact for these magnitudes)
  auto dx = xb.abs().amax(2, true) / 127.f;
  auto id = at::where(dx != 0, dx.reciprocal(), at::zeros_like(dx));
  auto t = (xb * id).to(at::kDouble);
  auto qx = at::sign(t) * at::floor(t.abs() + 0.5);
  at::Tensor q, d, m;
  decode(w, q, d, m);
  // exact integer block dots [rows, out, blocks], scaled by the fp32 product d * dx
  auto isum = at::einsum("rbj,obj->rob", {qx, q.to(at::kDouble)});
  auto scale = (d.squeeze(2).unsqueeze(0) * dx.squeeze(2).unsqueeze(1)).to(at::kDouble);
  auto y = (isum * scale).sum(2);
  if (m.defined()) {
    auto sx = dx.squeeze(2) * qx.sum(2).to(at::kFloat);  // [rows, blocks]
    y = y + at::matmul(sx.to(at::kDouble), m.squeeze(2).to(at::kDouble).t());
  }
  if (bias.defined()) y = y + bias.to(at::kDouble);
  return y.to(x.scalar_type()).reshape(detail::out_sizes(x, w.out));
}

}  // namespace sllm::ops::ref
