#include "quantize/awq.h"

#include <ATen/ATen.h>

#include <functional>
#include <limits>

#include "core/error.h"
#include "quantize/layer_util.h"

namespace sllm::quantize {
namespace {

// Per-group asymmetric parameters of wg [N, gs]: fp16-rounded scale and integer zero.
std::pair<at::Tensor, at::Tensor> asym_params(const at::Tensor& wg, int bits) {
  const double maxq = (1 << bits) - 1;
  auto mx = wg.amax(1, true), mn = wg.amin(1, true);
  auto scale = ((mx - mn).clamp_min(1e-5) / maxq).to(at::kHalf).to(at::kFloat);
  auto zero = (-(mn / scale).round()).clamp(0, maxq);
  return {scale, zero};
}

at::Tensor quantize_groups(const at::Tensor& wg, const at::Tensor& scale, const at::Tensor& zero,
                           int bits) {
  return (wg / scale).round().add(zero).clamp(0, (1 << bits) - 1);
}

// Q(w) dequantized: what the block computes with once w is quantized. w [rows, in].
at::Tensor pseudo_quant(const at::Tensor& w, int bits, int64_t gs) {
  auto wg = w.reshape({-1, gs});
  auto [scale, zero] = asym_params(wg, bits);
  return ((quantize_groups(wg, scale, zero, bits) - zero) * scale).reshape(w.sizes());
}

// The scale search of one group of Linears: w is their (fused) weight [rows, in], x_all every
// calibration input [.., in], block(wq) the group's block output with wq in place of w on the
// search inputs, ref that output with w itself.
at::Tensor search_scale(const at::Tensor& w, const at::Tensor& x_all,
                        const std::function<at::Tensor(const at::Tensor&)>& block,
                        const at::Tensor& ref, const AwqOptions& o) {
  const int64_t in = w.size(1);
  auto wa = w.abs().reshape({-1, o.group_size});
  wa = wa / (wa.amax(1, true) + 1e-6);
  auto w_mean = wa.reshape(w.sizes()).mean(0);
  auto x_mean = x_all.reshape({-1, in}).abs().mean(0);
  double best = std::numeric_limits<double>::infinity();
  at::Tensor best_s;
  for (int64_t k = 0; k < o.grid; ++k) {
    const double r = static_cast<double>(k) / static_cast<double>(o.grid);
    auto s = (x_mean.pow(r) / (w_mean.pow(1 - r) + 1e-4)).clamp_min(1e-4);
    s = s / (s.max() * s.min()).sqrt();
    s = at::nan_to_num(s, 1.0, 1.0, 1.0);
    auto wq = pseudo_quant(w * s, o.bits, o.group_size) / s;
    const double loss = (block(wq) - ref).square().mean().item<double>();
    if (loss < best) {
      best = loss;
      best_s = s;
    }
  }
  SLLM_CHECK(best_s.defined(), "AWQ: the scale search found no finite loss (NaN activations?)");
  return best_s;
}

// Per-group clipping: the max |w| of each (row, group) shrunk by up to max_shrink, keeping the
// value whose quantized group output on x [n, in] is closest to the original.
at::Tensor clip_weight(const at::Tensor& w, const at::Tensor& x, const AwqOptions& o) {
  const int64_t gs = o.group_size, groups = w.size(1) / gs;
  auto out = w.clone();
  const auto steps = static_cast<int64_t>(o.max_shrink * static_cast<double>(o.grid));
  for (int64_t g = 0; g < groups; ++g) {
    auto wg = w.narrow(1, g * gs, gs);
    auto xg = x.narrow(1, g * gs, gs).t();
    auto ref = wg.matmul(xg);
    auto mx = wg.abs().amax(1, true);
    auto best_err = at::full({w.size(0), 1}, std::numeric_limits<float>::infinity());
    auto best_mx = mx.clone();
    for (int64_t i = 0; i < steps; ++i) {
      auto m = mx * (1.0 - static_cast<double>(i) / static_cast<double>(o.grid));
      auto q = pseudo_quant(at::clamp(wg, -m, m), o.bits, gs);
      auto err = (q.matmul(xg) - ref).square().mean(1, true);
      auto better = err < best_err;
      best_err = at::where(better, err, best_err);
      best_mx = at::where(better, m, best_mx);
    }
    out.narrow(1, g * gs, gs).copy_(at::clamp(wg, -best_mx, best_mx));
  }
  return out;
}

// Every `stride`-th token of x [.., in], at most n of them (AWQ's clipping subsample).
at::Tensor token_sample(const at::Tensor& x, int64_t n) {
  auto flat = x.reshape({-1, x.size(-1)});
  const int64_t stride = std::max<int64_t>(1, flat.size(0) / n);
  return flat.slice(0, 0, flat.size(0), stride).narrow(0, 0, std::min(n, flat.size(0) / stride));
}

}  // namespace

quant::IntQWeight awq_quantize(const at::Tensor& w, int bits, int64_t group_size) {
  const int64_t out = w.size(0), in = w.size(1);
  SLLM_CHECK(in % group_size == 0, "group size {} does not divide the input width {}", group_size,
             in);
  auto wg = w.to(at::kFloat).reshape({-1, group_size});
  auto [scale, zero] = asym_params(wg, bits);
  auto q = quantize_groups(wg, scale, zero, bits).to(at::kByte).contiguous();
  scale = scale.contiguous();
  zero = zero.contiguous();
  quant::IntQWeight r;
  r.bits = bits;
  r.group_size = group_size;
  r.out = out;
  r.in = in;
  r.sym = false;
  r.q.assign(q.data_ptr<uint8_t>(), q.data_ptr<uint8_t>() + q.numel());
  r.scales.assign(scale.data_ptr<float>(), scale.data_ptr<float>() + scale.numel());
  r.zeros.assign(zero.data_ptr<float>(), zero.data_ptr<float>() + zero.numel());
  return r;
}

model::DecoderLayer awq_layer(const model::LlamaModel& m, const model::DecoderLayer& layer,
                              const at::Tensor& x, const AwqOptions& o) {
  const auto& c = m.config();
  auto L = dense_copy(layer);
  // The inputs of the four Linears over all calibration tokens.
  std::vector<at::Tensor> in(4);
  model::LlamaModel::LinearTap tap = [&](int which, const at::Tensor& t) { in[which] = t; };
  m.run_layer(L, x, &tap);
  const int64_t ns =
      std::clamp<int64_t>((o.search_tokens + x.size(1) - 1) / x.size(1), 1, x.size(0));
  auto search = [&](int which) { return in[which].narrow(0, 0, ns); };

  // 1. input_layernorm -> q, k, v (judged on the attention output).
  {
    auto xs = search(0);
    auto ref = m.attention_block(L, xs);
    auto s = search_scale(
        L.qkv.dense_weight(), in[0],
        [&](const at::Tensor& wq) {
          auto T = L;
          T.qkv.dense_weight() = wq;
          return m.attention_block(T, xs);
        },
        ref, o);
    L.attn_norm = L.attn_norm / s;
    L.qkv.dense_weight() = L.qkv.dense_weight() * s;
    in[0] = in[0] / s;
  }
  // 2. v -> o, only when v's rows are o's inputs one for one (no grouped-query attention).
  const int64_t qd = c.num_heads * c.head_dim, kd = c.num_kv_heads * c.head_dim;
  if (kd == L.o.in_features()) {
    auto xs = search(1);
    auto s = search_scale(
        L.o.dense_weight(), in[1],
        [&](const at::Tensor& wq) { return at::linear(xs, wq, L.o.bias); },
        at::linear(xs, L.o.dense_weight(), L.o.bias), o);
    auto v = L.qkv.dense_weight().narrow(0, qd + kd, kd);
    v.div_(s.unsqueeze(1));
    if (L.qkv.bias.defined()) L.qkv.bias.narrow(0, qd + kd, kd).div_(s);
    L.o.dense_weight() = L.o.dense_weight() * s;
    in[1] = in[1] / s;
  }
  // 3. post_attention_layernorm -> gate, up (judged on the MLP output).
  {
    auto xs = search(2);
    auto ref = m.mlp_block(L, xs);
    auto s = search_scale(
        L.gate_up.dense_weight(), in[2],
        [&](const at::Tensor& wq) {
          auto T = L;
          T.gate_up.dense_weight() = wq;
          return m.mlp_block(T, xs);
        },
        ref, o);
    L.ffn_norm = L.ffn_norm / s;
    L.gate_up.dense_weight() = L.gate_up.dense_weight() * s;
    in[2] = in[2] / s;
  }
  // 4. up -> down.
  {
    auto xs = search(3);
    auto s = search_scale(
        L.down.dense_weight(), in[3], [&](const at::Tensor& wq) { return at::linear(xs, wq); },
        at::linear(xs, L.down.dense_weight()), o);
    const int64_t I = c.intermediate_size;
    L.gate_up.dense_weight().narrow(0, I, I).div_(s.unsqueeze(1));
    L.down.dense_weight() = L.down.dense_weight() * s;
    in[3] = in[3] / s;
  }
  // Clipping for every Linear but q and k (their errors are amplified by the softmax).
  {
    auto v = L.qkv.dense_weight().narrow(0, qd + kd, kd);
    v.copy_(clip_weight(v, token_sample(in[0], o.clip_tokens), o));
    L.o.dense_weight() = clip_weight(L.o.dense_weight(), token_sample(in[1], o.clip_tokens), o);
    L.gate_up.dense_weight() =
        clip_weight(L.gate_up.dense_weight(), token_sample(in[2], o.clip_tokens), o);
    L.down.dense_weight() =
        clip_weight(L.down.dense_weight(), token_sample(in[3], o.clip_tokens), o);
  }
  auto quantize = [&](const model::Linear& l) {
    std::vector<quant::IntQWeight> parts;
    for (int p = 0; p < static_cast<int>(l.parts.size()); ++p)
      parts.push_back(awq_quantize(l.dense_part(p), o.bits, o.group_size));
    return model::make_intq_linear(l.parts, parts, l.bias, "awq");
  };
  for (auto [name, l] : L.linears()) l = quantize(l);
  return L;
}

}  // namespace sllm::quantize
