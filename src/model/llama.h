// The Llama-family decoder: immutable weights + config, shareable across threads.
// Two forwards: full sequences for training/eval (autograd, no cache) and a flattened
// batch of many sequences against the paged KV cache (inference).
#pragma once

#include <ATen/core/Tensor.h>

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/linear.h"
#include "model/model_config.h"

namespace sllm::kv {
class KvCache;
}

namespace sllm::model {

// A Linear of a decoder layer with its member name ("qkv", "o", "gate_up", "down").
template <typename L>
struct NamedLinear {
  std::string_view name;
  L& linear;
};

struct DecoderLayer {
  at::Tensor attn_norm, ffn_norm;  // [hidden]
  Linear qkv;                      // fused q | k | v  [(H + 2*KVH) * D, hidden]
  Linear o;                        // [hidden, H * D]
  Linear gate_up;                  // fused gate | up  [2 * intermediate, hidden]
  Linear down;                     // [hidden, intermediate]

  // Every Linear of the layer in forward order (the LinearTap index): qkv, o, gate_up, down.
  std::array<NamedLinear<Linear>, 4> linears() {
    return {{{"qkv", qkv}, {"o", o}, {"gate_up", gate_up}, {"down", down}}};
  }
  std::array<NamedLinear<const Linear>, 4> linears() const {
    return {{{"qkv", qkv}, {"o", o}, {"gate_up", gate_up}, {"down", down}}};
  }
};

// One engine step, flattened: N new tokens of B sequences, padded views for attention.
// Built by the engine from block tables; the model only reads it.
struct BatchLayout {
  at::Tensor tokens;        // [N] int64
  at::Tensor positions;     // [N] int64 absolute positions
  at::Tensor slot_mapping;  // [N] int64 KV slots the new tokens are written to
  int64_t num_seqs = 0, max_q = 0, max_kv = 0;
  bool padded = false;      // false: every sequence has max_q new tokens, so [N] == [B*max_q]
  at::Tensor q_gather;      // [B*max_q] index into N (padded entries -> 0); only if padded
  at::Tensor q_scatter;     // [N] index into B*max_q; only if padded
  at::Tensor kv_slots;      // [B*max_kv] slots to read (padded -> 0)
  at::Tensor attn_mask;     // [B, 1, max_q, max_kv] additive, or undefined if none is needed
  at::Tensor logits_index;  // [M] rows of N whose logits are wanted
};

class LlamaModel {
 public:
  LlamaModel(ModelConfig config, at::Tensor embed, std::vector<DecoderLayer> layers,
             at::Tensor final_norm, Linear lm_head);

  const ModelConfig& config() const { return config_; }
  at::ScalarType dtype() const { return final_norm_.scalar_type(); }
  at::Device device() const { return final_norm_.device(); }

  // ids [B, T] -> logits [B, T, vocab] (fp32). Causal, positions 0..T-1, no cache.
  at::Tensor forward_full(const at::Tensor& ids) const;
  // ids [B, T] -> final-normed hidden states [B, T, hidden] (the training forward; the loss
  // then projects only the positions that carry a label). checkpoint: recompute each layer's
  // activations during backward instead of keeping them.
  at::Tensor hidden_full(const at::Tensor& ids, bool checkpoint = false) const;
  // hidden [..., hidden] -> logits [..., vocab] (fp32).
  at::Tensor logits(const at::Tensor& hidden) const;
  // One inference step; returns logits [M, vocab] (fp32) for layout.logits_index.
  at::Tensor forward_step(const BatchLayout& layout, kv::KvCache& cache) const;

  // Named tensors in Hugging Face naming (fused weights split back), for export.
  std::vector<std::pair<std::string, at::Tensor>> hf_state_dict() const;
  // Parameter memory in bytes and a per-format summary ("dense Float: 272 tensors").
  uint64_t weight_bytes() const;
  const std::vector<DecoderLayer>& layers() const { return layers_; }
  // The token table [vocab, hidden], dense (decoded from its blocks when kept as stored: a
  // full copy, for export and tools, not for the forward).
  at::Tensor embed() const;
  // The token table's GGUF blocks when it is kept as stored (with_embedding_blocks), else null.
  const Linear* embed_blocks() const { return embed_blocks_ ? &*embed_blocks_ : nullptr; }
  const at::Tensor& final_norm() const { return final_norm_; }
  const Linear& lm_head() const { return lm_head_; }

  // ---- pieces of the full forward, for layer-by-layer quantization (positions 0..T-1) ----
  // ids [B, T] -> embeddings [B, T, hidden].
  at::Tensor embed_tokens(const at::Tensor& ids) const;
  // Layer L (not necessarily one of this model's) on x [B, T, hidden]; tap, if given, sees the
  // input of each Linear as it is computed, by its index in DecoderLayer::linears().
  using LinearTap = std::function<void(int which, const at::Tensor& input)>;
  at::Tensor run_layer(const DecoderLayer& L, const at::Tensor& x,
                       const LinearTap* tap = nullptr) const;
  // Attention output (after o, before the residual) from the normed input h [B, T, hidden].
  at::Tensor attention_block(const DecoderLayer& L, const at::Tensor& h) const;
  // MLP output (after down) from the normed input h.
  at::Tensor mlp_block(const DecoderLayer& L, const at::Tensor& h) const;
  // Returns a copy with layer i replaced (the rest shared).
  LlamaModel with_layer(int64_t i, DecoderLayer layer) const;
  // Returns a copy whose output head is `head` ([vocab, hidden], e.g. quantized), the rest
  // shared. The head is then its own weight: the copy's config no longer ties it to the
  // embedding (which stays as it is).
  LlamaModel with_lm_head(Linear head) const;

  // Returns a copy whose token table is `blocks` (GGUF blocks, [vocab, hidden]), looked up row by
  // row as stored; the dense table is dropped. A GGUF's tied table is the head's own blocks.
  LlamaModel with_embedding_blocks(Linear blocks) const;

  // Returns a copy with every weight converted to dtype / moved to device (4-bit weights keep
  // their format and only move; LoRA adapters keep their dtype).
  LlamaModel to(at::ScalarType dtype, at::Device device) const;
  // Returns a copy whose decoder Linears are fn(layer index, linear); the rest is shared.
  LlamaModel map_linears(const std::function<Linear(int64_t, const Linear&)>& fn) const;
  // Every LoRA A and B tensor, in layer order.
  std::vector<at::Tensor> lora_parameters() const;
  // Full fine-tuning: embeddings, norms and dense Linear weights/biases (tied weights once).
  std::vector<at::Tensor> dense_parameters() const;
  // Parameter count (4-bit weights counted by their element count).
  int64_t num_parameters() const;

 private:
  at::Tensor rope_cos_sin(const at::Tensor& positions, at::Tensor* sin) const;
  at::Tensor layer_full(const DecoderLayer& L, const at::Tensor& x, const at::Tensor& cos,
                        const at::Tensor& sin, const LinearTap* tap = nullptr) const;
  at::Tensor attention_full(const DecoderLayer& L, const at::Tensor& h, const at::Tensor& cos,
                            const at::Tensor& sin, const LinearTap* tap) const;
  at::Tensor positions_cos_sin(int64_t B, int64_t T, at::Tensor* sin) const;
  // Embeddings of ids [N] -> [N, hidden] in the model's dtype.
  at::Tensor lookup(const at::Tensor& ids) const;
  // A copy sharing everything with this one but the given pieces (embed_blocks_ carried over).
  LlamaModel rebuilt(ModelConfig config, at::Tensor embed, std::vector<DecoderLayer> layers,
                     at::Tensor final_norm, Linear lm_head) const;
  at::Tensor attention_step(const at::Tensor& q, const at::Tensor& k_all, const at::Tensor& v_all,
                            const BatchLayout& layout) const;

  ModelConfig config_;
  at::Tensor embed_;  // undefined when the table is kept as GGUF blocks (embed_blocks_)
  std::optional<Linear> embed_blocks_;
  std::vector<DecoderLayer> layers_;
  at::Tensor final_norm_;
  Linear lm_head_;
  at::Tensor inv_freq_;  // [head_dim/2] fp32, scaled per rope_scaling
};

// Inverse frequencies with rope scaling applied (none, linear, llama3) as transformers does.
at::Tensor rope_inv_freq(const ModelConfig& c);

}  // namespace sllm::model
