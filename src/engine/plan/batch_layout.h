// The index side of one engine step, no tensors: the scheduled chunks flattened into N new
// tokens (ids, positions, the KV slots they are written to), the padded [B, max_q] and
// [B, max_kv] views attention reads, and the causal mask. The engine copies these into the
// tensors of model::BatchLayout.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/plan/scheduler.h"
#include "kv/block_manager.h"

namespace sllm::engine {

struct LayoutIndices {
  int64_t num_seqs = 0, max_q = 0, max_kv = 0;
  bool padded = false;     // some chunk has fewer than max_q tokens
  bool need_mask = false;  // a chunk has several queries or a context shorter than max_kv
  std::vector<int64_t> tokens, positions, slot_mapping;  // [N]
  std::vector<int64_t> kv_slots;                         // [B*max_kv], padding 0
  std::vector<int64_t> q_gather;                         // [B*max_q] into N; only if padded
  std::vector<int64_t> q_scatter;                        // [N] into B*max_q; only if padded
  std::vector<int64_t> logits_index;                     // rows of N whose logits are sampled
  std::vector<int64_t> chunk_start, chunk_len;           // [B] first position, new tokens

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
};

// Lays out the chunks (their slots already appended to mgr's block tables) in order.
LayoutIndices build_layout(const std::vector<Chunk>& chunks, const kv::BlockManager& mgr);

// Writes the additive mask [B, 1, max_q, max_kv]: query j of sequence b, at position
// start + j, sees keys 0..start + j (0 or -inf); padded query rows see key 0 only.
void fill_attn_mask(const LayoutIndices& x, float* out);

}  // namespace sllm::engine
