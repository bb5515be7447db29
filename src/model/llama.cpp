#include "model/llama.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/error.h"
#include "kv/kv_cache.h"
#include "ops/checkpoint.h"
#include "ops/gguf.h"
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
  SLLM_CHECK(final_norm_.defined(), "model has no final norm");
  inv_freq_ = rope_inv_freq(config_).to(final_norm_.device());
}

LlamaModel LlamaModel::rebuilt(ModelConfig config, at::Tensor embed,
                               std::vector<DecoderLayer> layers, at::Tensor final_norm,
                               Linear lm_head) const {
  LlamaModel m(std::move(config), std::move(embed), std::move(layers), std::move(final_norm),
               std::move(lm_head));
  m.embed_blocks_ = embed_blocks_;
  return m;
}

LlamaModel LlamaModel::with_embedding_blocks(Linear blocks) const {
  const auto* g = blocks.get_if<GgufFormat>();
  SLLM_CHECK(g && g->pieces.size() == 1 && g->out() == config_.vocab_size &&
                 g->in() == config_.hidden_size,
             "an embedding table kept as stored must be GGUF blocks of shape [{}, {}]",
             config_.vocab_size, config_.hidden_size);
  LlamaModel m(config_, at::Tensor(), layers_, final_norm_, lm_head_);
  m.embed_blocks_ = std::move(blocks);
  return m;
}

at::Tensor LlamaModel::embed() const {
  return embed_.defined() ? embed_ : embed_blocks_->dense_part(0).to(dtype());
}

at::Tensor LlamaModel::lookup(const at::Tensor& ids) const {
  if (embed_.defined()) return embed_.index_select(0, ids);
  return ops::gguf_rows(embed_blocks_->get<GgufFormat>().only(), ids, dtype());
}

at::Tensor LlamaModel::rope_cos_sin(const at::Tensor& positions, at::Tensor* sin) const {
  auto freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq_.unsqueeze(0);  // [N, D/2]
  *sin = freqs.sin();
  return freqs.cos();
}

at::Tensor LlamaModel::forward_full(const at::Tensor& ids) const {
  return logits(hidden_full(ids));
}

at::Tensor LlamaModel::logits(const at::Tensor& hidden) const {
  return lm_head_.forward(hidden).to(at::kFloat);
}

at::Tensor LlamaModel::attention_full(const DecoderLayer& L, const at::Tensor& h,
                                      const at::Tensor& cos, const at::Tensor& sin,
                                      const LinearTap* tap) const {
  const auto& c = config_;
  const int64_t B = h.size(0), T = h.size(1), H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim,
                G = H / KV;
  if (tap) (*tap)(0, h);
  auto qkv = L.qkv.forward(h).view({B * T, H + 2 * KV, D});
  auto q = ops::rope(qkv.narrow(1, 0, H), cos, sin).view({B, T, H, D}).transpose(1, 2);
  auto k = ops::rope(qkv.narrow(1, H, KV), cos, sin).view({B, T, KV, D}).transpose(1, 2);
  auto v = qkv.narrow(1, H + KV, KV).reshape({B, T, KV, D}).transpose(1, 2);
  if (G > 1) {
    k = k.repeat_interleave(G, 1);
    v = v.repeat_interleave(G, 1);
  }
  auto a = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true);
  auto ain = a.transpose(1, 2).reshape({B, T, H * D});
  if (tap) (*tap)(1, ain);
  return L.o.forward(ain);
}

at::Tensor LlamaModel::layer_full(const DecoderLayer& L, const at::Tensor& x, const at::Tensor& cos,
                                  const at::Tensor& sin, const LinearTap* tap) const {
  const auto& c = config_;
  auto y = x + attention_full(L, ops::rms_norm(x, L.attn_norm, c.rms_norm_eps), cos, sin, tap);
  auto h = ops::rms_norm(y, L.ffn_norm, c.rms_norm_eps);
  if (tap) (*tap)(2, h);
  auto act = ops::silu_mul(L.gate_up.forward(h));
  if (tap) (*tap)(3, act);
  return y + L.down.forward(act);
}

at::Tensor LlamaModel::positions_cos_sin(int64_t B, int64_t T, at::Tensor* sin) const {
  auto pos = at::arange(T, at::TensorOptions().dtype(at::kLong).device(device())).repeat({B});
  return rope_cos_sin(pos, sin);
}

at::Tensor LlamaModel::embed_tokens(const at::Tensor& ids) const {
  return lookup(ids.reshape({-1}).to(device()))
      .view({ids.size(0), ids.size(1), config_.hidden_size});
}

at::Tensor LlamaModel::run_layer(const DecoderLayer& L, const at::Tensor& x,
                                 const LinearTap* tap) const {
  at::Tensor sin;
  auto cos = positions_cos_sin(x.size(0), x.size(1), &sin);
  return layer_full(L, x, cos, sin, tap);
}

at::Tensor LlamaModel::attention_block(const DecoderLayer& L, const at::Tensor& h) const {
  at::Tensor sin;
  auto cos = positions_cos_sin(h.size(0), h.size(1), &sin);
  return attention_full(L, h, cos, sin, nullptr);
}

at::Tensor LlamaModel::mlp_block(const DecoderLayer& L, const at::Tensor& h) const {
  return L.down.forward(ops::silu_mul(L.gate_up.forward(h)));
}

LlamaModel LlamaModel::with_layer(int64_t i, DecoderLayer layer) const {
  SLLM_CHECK(i >= 0 && i < static_cast<int64_t>(layers_.size()), "layer {} out of range", i);
  auto layers = layers_;
  layers[i] = std::move(layer);
  return rebuilt(config_, embed_, std::move(layers), final_norm_, lm_head_);
}

at::Tensor LlamaModel::hidden_full(const at::Tensor& ids, bool checkpoint) const {
  SLLM_CHECK(ids.dim() == 2, "forward_full expects ids [batch, seq], got {}",
             c10::str(ids.sizes()));
  const auto& c = config_;
  auto x = embed_tokens(ids);
  at::Tensor sin;
  auto cos = positions_cos_sin(ids.size(0), ids.size(1), &sin);
  for (const auto& L : layers_) {
    if (checkpoint) {
      // The closure lives in the autograd graph until backward; the model outlives the step.
      const DecoderLayer* lp = &L;
      x = ops::checkpoint(
          [this, lp, cos, sin](const at::Tensor& in) { return layer_full(*lp, in, cos, sin); }, x);
    } else {
      x = layer_full(L, x, cos, sin);
    }
  }
  return ops::rms_norm(x, final_norm_, c.rms_norm_eps);
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
  auto x = lookup(lay.tokens);
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
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.emplace_back("model.embed_tokens.weight", embed());
  auto add_linear = [&](const std::string& prefix, const Linear& l) {
    for (int j = 0; j < static_cast<int>(l.parts.size()); ++j) {
      const auto& part = l.parts[j];
      out.emplace_back(prefix + part.name + ".weight", l.dense_part(j));
      if (l.bias.defined())
        out.emplace_back(prefix + part.name + ".bias",
                         l.bias.narrow(0, l.part_offset(j), part.rows));
    }
  };
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& L = layers_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.emplace_back(p + "input_layernorm.weight", L.attn_norm);
    add_linear(p, L.qkv);
    add_linear(p, L.o);
    out.emplace_back(p + "post_attention_layernorm.weight", L.ffn_norm);
    add_linear(p, L.gate_up);
    add_linear(p, L.down);
  }
  out.emplace_back("model.norm.weight", final_norm_);
  // A quantized head (never tied) is dequantized here; quant_layout writes its stored layout.
  if (!config_.tie_embeddings) out.emplace_back("lm_head.weight", lm_head_.dense_part(0));
  return out;
}

uint64_t LlamaModel::weight_bytes() const {
  uint64_t total =
      (embed_.defined() ? embed_.nbytes() : embed_blocks_->weight_bytes()) + final_norm_.nbytes();
  if (!config_.tie_embeddings) total += lm_head_.weight_bytes();
  for (const auto& L : layers_) {
    total += L.attn_norm.nbytes() + L.ffn_norm.nbytes();
    for (const auto& [name, l] : L.linears()) total += l.weight_bytes();
  }
  return total;
}

int64_t LlamaModel::num_parameters() const {
  int64_t n = config_.vocab_size * config_.hidden_size + final_norm_.numel();
  if (!config_.tie_embeddings) n += lm_head_.in_features() * lm_head_.out_features();
  auto lin = [](const Linear& l) {
    int64_t k = l.in_features() * l.out_features() + (l.bias.defined() ? l.bias.numel() : 0);
    for (const auto& a : l.lora) k += a.A.numel() + a.B.numel();
    return k;
  };
  for (const auto& L : layers_) {
    n += L.attn_norm.numel() + L.ffn_norm.numel();
    for (const auto& [name, l] : L.linears()) n += lin(l);
  }
  return n;
}

std::vector<at::Tensor> LlamaModel::lora_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& L : layers_)
    for (const auto& [name, l] : L.linears())
      for (const auto& a : l.lora) {
        out.push_back(a.A);
        out.push_back(a.B);
      }
  return out;
}

std::vector<at::Tensor> LlamaModel::dense_parameters() const {
  SLLM_CHECK(embed_.defined(),
             "full fine-tuning needs a dense embedding table; this model keeps it as GGUF blocks "
             "(load it with --dequantize)");
  std::vector<at::Tensor> out{embed_};
  for (const auto& L : layers_) {
    out.push_back(L.attn_norm);
    out.push_back(L.ffn_norm);
    for (const auto& [name, l] : L.linears()) {
      SLLM_CHECK(l.is<DenseFormat>(),
                 "full fine-tuning needs dense weights; this model has {} weights",
                 l.format_name());
      out.push_back(l.dense_weight());
      if (l.bias.defined()) out.push_back(l.bias);
    }
  }
  out.push_back(final_norm_);
  if (!config_.tie_embeddings) {
    SLLM_CHECK(lm_head_.is<DenseFormat>(),
               "full fine-tuning needs a dense lm_head; this model's is {}",
               lm_head_.format_name());
    out.push_back(lm_head_.dense_weight());
  }
  return out;
}

LlamaModel LlamaModel::map_linears(const std::function<Linear(int64_t, const Linear&)>& fn) const {
  std::vector<DecoderLayer> layers;
  for (size_t i = 0; i < layers_.size(); ++i) {
    DecoderLayer L = layers_[i];
    for (auto [name, l] : L.linears()) l = fn(static_cast<int64_t>(i), l);
    layers.push_back(std::move(L));
  }
  return rebuilt(config_, embed_, std::move(layers), final_norm_, lm_head_);
}

LlamaModel LlamaModel::with_lm_head(Linear head) const {
  SLLM_CHECK(head.out_features() == config_.vocab_size && head.in_features() == config_.hidden_size,
             "lm_head of shape [{}, {}] does not fit the model ([{}, {}])", head.out_features(),
             head.in_features(), config_.vocab_size, config_.hidden_size);
  ModelConfig c = config_;
  c.tie_embeddings = false;
  return rebuilt(std::move(c), embed_, layers_, final_norm_, std::move(head));
}

LlamaModel LlamaModel::to(at::ScalarType dtype, at::Device device) const {
  auto cv = [&](const at::Tensor& t) { return t.defined() ? t.to(device, dtype).contiguous() : t; };
  std::vector<DecoderLayer> layers;
  for (const auto& src : layers_) {
    DecoderLayer L = src;
    L.attn_norm = cv(src.attn_norm);
    L.ffn_norm = cv(src.ffn_norm);
    for (auto [name, l] : L.linears()) l = l.to(device, dtype);
    layers.push_back(std::move(L));
  }
  auto embed = cv(embed_);
  Linear head = lm_head_.to(device, dtype);
  if (config_.tie_embeddings && embed.defined() && head.is<DenseFormat>())
    head.dense_weight() = embed;
  LlamaModel m(config_, embed, std::move(layers), cv(final_norm_), head);
  if (embed_blocks_) {
    // A tied table is the head's blocks: keep sharing them after the move.
    m.embed_blocks_ =
        config_.tie_embeddings && head.is<GgufFormat>() ? head : embed_blocks_->to(device, dtype);
  }
  return m;
}

}  // namespace sllm::model
