#include "model/llama.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/error.h"
#include "kv/kv_cache.h"
#include "ops/ops.h"

namespace sllm::model {

at::Tensor rope_inv_freq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<float> f(half);
  for (int64_t i = 0; i < half; ++i)
    f[i] =
        static_cast<float>(1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / c.head_dim));
  const auto& rs = c.rope_scaling;
  if (rs.type == "linear") {
    for (auto& x : f) x = static_cast<float>(x / rs.factor);
  } else if (rs.type == "llama3") {
    // Long wavelengths are slowed by `factor`, short ones kept, the band between blended.
    const double low_wavelen = rs.original_max_position / rs.low_freq_factor;
    const double high_wavelen = rs.original_max_position / rs.high_freq_factor;
    for (auto& x : f) {
      const double wavelen = 2 * M_PI / x;
      if (wavelen > low_wavelen) {
        x = static_cast<float>(x / rs.factor);
      } else if (wavelen >= high_wavelen) {
        const double smooth = (rs.original_max_position / wavelen - rs.low_freq_factor) /
                              (rs.high_freq_factor - rs.low_freq_factor);
        x = static_cast<float>((1 - smooth) * x / rs.factor + smooth * x);
      }
    }
  }
  return at::tensor(f, at::kFloat);
}

LlamaModel::LlamaModel(ModelConfig config, at::Tensor embed, std::vector<DecoderLayer> layers,
                       at::Tensor final_norm, Linear lm_head)
    : config_(std::move(config)),
      embed_(std::move(embed)),
      layers_(std::move(layers)),
      final_norm_(std::move(final_norm)),
      lm_head_(std::move(lm_head)) {
  config_.validate("model");
  SLLM_CHECK(static_cast<int64_t>(layers_.size()) == config_.num_layers,
             "model has {} layers, config says {}", layers_.size(), config_.num_layers);
  inv_freq_ = rope_inv_freq(config_).to(embed_.device());
}

at::Tensor LlamaModel::rope_cos_sin(const at::Tensor& positions, at::Tensor* sin) const {
  auto freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq_.unsqueeze(0);  // [N, D/2]
  *sin = freqs.sin();
  return freqs.cos();
}

at::Tensor LlamaModel::forward_full(const at::Tensor& ids) const {
  SLLM_CHECK(ids.dim() == 2, "forward_full expects ids [batch, seq], got {}",
             c10::str(ids.sizes()));
  const auto& c = config_;
  const int64_t B = ids.size(0), T = ids.size(1), H = c.num_heads, KV = c.num_kv_heads,
                D = c.head_dim, G = H / KV;
  auto x = embed_.index_select(0, ids.reshape({-1}).to(device())).view({B, T, c.hidden_size});
  at::Tensor sin;
  auto pos = at::arange(T, at::TensorOptions().dtype(at::kLong).device(device())).repeat({B});
  auto cos = rope_cos_sin(pos, &sin);
  for (const auto& L : layers_) {
    auto h = ops::rms_norm(x, L.attn_norm, c.rms_norm_eps);
    auto qkv = L.qkv.forward(h).view({B * T, H + 2 * KV, D});
    auto q = ops::rope(qkv.narrow(1, 0, H), cos, sin).view({B, T, H, D}).transpose(1, 2);
    auto k = ops::rope(qkv.narrow(1, H, KV), cos, sin).view({B, T, KV, D}).transpose(1, 2);
    auto v = qkv.narrow(1, H + KV, KV).reshape({B, T, KV, D}).transpose(1, 2);
    if (G > 1) {
      k = k.repeat_interleave(G, 1);
      v = v.repeat_interleave(G, 1);
    }
    auto a = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
    x = x + L.o.forward(a.transpose(1, 2).reshape({B, T, H * D}));
    h = ops::rms_norm(x, L.ffn_norm, c.rms_norm_eps);
    x = x + L.down.forward(ops::silu_mul(L.gate_up.forward(h)));
  }
  x = ops::rms_norm(x, final_norm_, c.rms_norm_eps);
  return lm_head_.forward(x).to(at::kFloat);
}

at::Tensor LlamaModel::attention_step(const at::Tensor& q_flat, const at::Tensor& k_all,
                                      const at::Tensor& v_all, const BatchLayout& lay) const {
  const auto& c = config_;
  const int64_t B = lay.num_seqs, Q = lay.max_q, Lk = lay.max_kv, H = c.num_heads,
                KV = c.num_kv_heads, D = c.head_dim, G = H / KV;
  auto q = lay.padded ? q_flat.index_select(0, lay.q_gather) : q_flat;
  // Fold the G query heads that share a KV head into the query axis: no K/V copies for GQA.
  q = q.view({B, Q, KV, G, D}).permute({0, 2, 3, 1, 4}).reshape({B, KV, G * Q, D});
  auto k = k_all.view({B, Lk, KV, D}).transpose(1, 2);
  auto v = v_all.view({B, Lk, KV, D}).transpose(1, 2);
  std::optional<at::Tensor> mask;
  if (lay.attn_mask.defined()) mask = lay.attn_mask;
  auto out = at::scaled_dot_product_attention(q, k, v, mask);
  out = out.view({B, KV, G, Q, D}).permute({0, 3, 1, 2, 4}).reshape({B * Q, H * D});
  return lay.padded ? out.index_select(0, lay.q_scatter) : out;
}

at::Tensor LlamaModel::forward_step(const BatchLayout& lay, kv::KvCache& cache) const {
  const auto& c = config_;
  const int64_t N = lay.tokens.size(0), H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim;
  const int64_t G = H / KV;
  auto x = embed_.index_select(0, lay.tokens);
  at::Tensor sin;
  auto cos = rope_cos_sin(lay.positions, &sin);
  BatchLayout l2 = lay;  // shallow: tensors are handles
  if (lay.attn_mask.defined()) {
    // Expand the mask once per step to the folded (G * max_q) query rows.
    l2.attn_mask = lay.attn_mask.to(dtype())
                       .unsqueeze(2)
                       .expand({lay.num_seqs, 1, G, lay.max_q, lay.max_kv})
                       .reshape({lay.num_seqs, 1, G * lay.max_q, lay.max_kv});
  }
  for (size_t li = 0; li < layers_.size(); ++li) {
    const auto& L = layers_[li];
    auto h = ops::rms_norm(x, L.attn_norm, c.rms_norm_eps);
    auto qkv = L.qkv.forward(h).view({N, H + 2 * KV, D});
    auto q = ops::rope(qkv.narrow(1, 0, H), cos, sin);
    auto k = ops::rope(qkv.narrow(1, H, KV), cos, sin);
    auto v = qkv.narrow(1, H + KV, KV);
    auto& kc = cache.k(static_cast<int64_t>(li));
    auto& vc = cache.v(static_cast<int64_t>(li));
    kc.index_copy_(0, lay.slot_mapping, k);
    vc.index_copy_(0, lay.slot_mapping, v);
    auto a =
        attention_step(q, kc.index_select(0, lay.kv_slots), vc.index_select(0, lay.kv_slots), l2);
    x = x + L.o.forward(a);
    h = ops::rms_norm(x, L.ffn_norm, c.rms_norm_eps);
    x = x + L.down.forward(ops::silu_mul(L.gate_up.forward(h)));
  }
  x = x.index_select(0, lay.logits_index);
  x = ops::rms_norm(x, final_norm_, c.rms_norm_eps);
  return lm_head_.forward(x).to(at::kFloat);
}

std::vector<std::pair<std::string, at::Tensor>> LlamaModel::hf_state_dict() const {
  const auto& c = config_;
  const int64_t qd = c.num_heads * c.head_dim, kd = c.num_kv_heads * c.head_dim;
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.emplace_back("model.embed_tokens.weight", embed_);
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& L = layers_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.emplace_back(p + "input_layernorm.weight", L.attn_norm);
    const char* names[3] = {"q_proj", "k_proj", "v_proj"};
    const int64_t starts[3] = {0, qd, qd + kd}, sizes[3] = {qd, kd, kd};
    for (int j = 0; j < 3; ++j) {
      out.emplace_back(p + "self_attn." + names[j] + ".weight",
                       L.qkv.weight.narrow(0, starts[j], sizes[j]));
      if (L.qkv.bias.defined())
        out.emplace_back(p + "self_attn." + names[j] + ".bias",
                         L.qkv.bias.narrow(0, starts[j], sizes[j]));
    }
    out.emplace_back(p + "self_attn.o_proj.weight", L.o.weight);
    out.emplace_back(p + "post_attention_layernorm.weight", L.ffn_norm);
    const int64_t I = c.intermediate_size;
    out.emplace_back(p + "mlp.gate_proj.weight", L.gate_up.weight.narrow(0, 0, I));
    out.emplace_back(p + "mlp.up_proj.weight", L.gate_up.weight.narrow(0, I, I));
    out.emplace_back(p + "mlp.down_proj.weight", L.down.weight);
  }
  out.emplace_back("model.norm.weight", final_norm_);
  if (!c.tie_embeddings) out.emplace_back("lm_head.weight", lm_head_.weight);
  return out;
}

uint64_t LlamaModel::weight_bytes() const {
  uint64_t total = 0;
  for (const auto& [name, t] : hf_state_dict()) total += t.numel() * t.element_size();
  return total;
}

LlamaModel LlamaModel::to(at::ScalarType dtype, at::Device device) const {
  auto cv = [&](const at::Tensor& t) { return t.defined() ? t.to(device, dtype).contiguous() : t; };
  auto cl = [&](const Linear& l) { return Linear{cv(l.weight), cv(l.bias), l.format}; };
  std::vector<DecoderLayer> layers;
  for (const auto& L : layers_)
    layers.push_back(
        {cv(L.attn_norm), cv(L.ffn_norm), cl(L.qkv), cl(L.o), cl(L.gate_up), cl(L.down)});
  auto embed = cv(embed_);
  Linear head = config_.tie_embeddings ? Linear{embed, {}, WeightFormat::dense} : cl(lm_head_);
  return LlamaModel(config_, embed, std::move(layers), cv(final_norm_), head);
}

}  // namespace sllm::model
