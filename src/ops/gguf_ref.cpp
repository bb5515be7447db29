// Plain-libtorch reference of the GGUF block ops: blocks decoded with tensor ops from the
// layouts (not the kernels' loops), q8 activations quantized with tensor ops, products in fp64.
// Every type is decoded to 32-element blocks of integers with a scale per block (Q6_K: per
// 16-element half) and, for the types with a minimum, a minimum per block.
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

// Bytes [off, off + n) of every K-quant super-block as int32: [out, super-blocks, n].
at::Tensor super_field(const GgufTensors& w, int64_t off, int64_t n) {
  const int64_t sb = w.in / 256;
  return w.blocks.reshape({w.out, sb, w.row_bytes() / sb}).narrow(2, off, n).to(at::kInt);
}

at::Tensor super_half(const GgufTensors& w, int64_t off) {  // [out, super-blocks, 1] fp32
  const int64_t sb = w.in / 256;
  return w.blocks.reshape({w.out, sb, w.row_bytes() / sb})
      .narrow(2, off, 2)
      .contiguous()
      .view(at::kHalf)
      .to(at::kFloat);
}

// Q4_K / Q5_K / Q6_K (ggml's layouts): q [out, blocks, 32], d [out, blocks, 1] (Q6_K: 2) as
// d * sc in fp32, m [out, blocks, 1] as -(dmin * m) (Q4_K, Q5_K).
void decode_k(const GgufTensors& w, at::Tensor& q, at::Tensor& d, at::Tensor& m) {
  const int64_t sb = w.in / 256, nb = w.in / 32;
  if (w.type == 14) {
    // ql[128]: [half, g & 1, 32], low nibbles for g < 2; qh[64]: [half, 32], bits 2 g, 2 g + 1
    auto ql = super_field(w, 0, 128).reshape({w.out, sb, 2, 1, 2, 32});
    auto lo = at::cat({ql.bitwise_and(0x0F), ql.bitwise_right_shift(4)}, 3)
                  .reshape({w.out, sb, 2, 4, 32});
    auto qh = super_field(w, 128, 64).reshape({w.out, sb, 2, 1, 32});
    auto hi = qh.bitwise_right_shift(at::arange(0, 8, 2, at::kInt).reshape({4, 1}))
                  .bitwise_and(3);  // [out, sb, 2, 4, 32]
    q = (lo + hi * 16 - 32).reshape({w.out, nb, 32}).to(at::kFloat);
    auto sc = super_field(w, 192, 16);  // int8 scales
    sc = (sc - sc.ge(128).to(at::kInt) * 256).to(at::kFloat);
    d = (super_half(w, 208) * sc).reshape({w.out, nb, 2});
    return;
  }
  // 6-bit scales and minima: j < 4 in the low 6 bits of bytes j and j + 4; j >= 4 the nibbles
  // of byte j + 4 with the top 2 bits of bytes j - 4 (scale) and j (minimum)
  auto s = super_field(w, 4, 12);
  auto a = s.narrow(2, 0, 4), b = s.narrow(2, 4, 4), c = s.narrow(2, 8, 4);
  auto sc = at::cat({a.bitwise_and(63), c.bitwise_and(15) + a.bitwise_right_shift(6) * 16}, 2);
  auto mn =
      at::cat({b.bitwise_and(63), c.bitwise_right_shift(4) + b.bitwise_right_shift(6) * 16}, 2);
  d = (super_half(w, 0) * sc.to(at::kFloat)).reshape({w.out, nb, 1});
  m = (-(super_half(w, 2) * mn.to(at::kFloat))).reshape({w.out, nb, 1});
  // qs[128]: [4, 32], sub-blocks 2 i and 2 i + 1 the low and high nibbles of row i
  auto qs = super_field(w, w.type == 12 ? 16 : 48, 128).reshape({w.out, sb, 4, 1, 32});
  auto qi =
      at::cat({qs.bitwise_and(0x0F), qs.bitwise_right_shift(4)}, 3).reshape({w.out, sb, 8, 32});
  if (w.type == 13) {  // fifth bit of sub-block j: bit j of qh[l]
    auto qh = super_field(w, 16, 32).reshape({w.out, sb, 1, 32});
    qi = qi + qh.bitwise_right_shift(at::arange(8, at::kInt).reshape({8, 1})).bitwise_and(1) * 16;
  }
  q = qi.reshape({w.out, nb, 32}).to(at::kFloat);
}

// The integer weights [out, blocks, 32] in element order (Q4_1: 0..15, Q5_1: 0..31, Q4_0: -8..7,
// Q5_0: -16..15, Q8_0: int8; K-quants: decode_k), the scales d [out, blocks, 1] (Q6_K: 2, one per
// half) and (Q4_1, Q5_1, Q4_K, Q5_K) the minima m [out, blocks, 1], fp32.
void decode(const GgufTensors& w, at::Tensor& q, at::Tensor& d, at::Tensor& m) {
  if (w.type >= 12) return decode_k(w, q, d, m);
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
  const int64_t g = d.size(2);  // scales per block
  // ggml: d * q (+ m), each op rounded in fp32
  auto v = (d.unsqueeze(3) * q.reshape({w.out, w.in / 32, g, 32 / g})).reshape({w.out, -1, 32});
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
  // exact integer dots [rows, out, blocks, scales per block], scaled by the fp32 product d * dx
  const int64_t g = d.size(2);
  auto isum = at::einsum("rbgj,obgj->robg", {qx.reshape({rows, nb, g, 32 / g}),
                                             q.reshape({w.out, nb, g, 32 / g}).to(at::kDouble)});
  auto scale = (d.unsqueeze(0) * dx.unsqueeze(1)).to(at::kDouble);  // [rows, out, blocks, g]
  auto y = (isum * scale).sum({2, 3});
  if (m.defined()) {
    auto sx = dx.squeeze(2) * qx.sum(2).to(at::kFloat);  // [rows, blocks]
    y = y + at::matmul(sx.to(at::kDouble), m.squeeze(2).to(at::kDouble).t());
  }
  if (bias.defined()) y = y + bias.to(at::kDouble);
  return y.to(x.scalar_type()).reshape(detail::out_sizes(x, w.out));
}

}  // namespace sllm::ops::ref
