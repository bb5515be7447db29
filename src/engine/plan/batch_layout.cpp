#include "engine/plan/batch_layout.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace sllm::engine {

LayoutIndices build_layout(const std::vector<Chunk>& chunks, const kv::BlockManager& mgr) {
  LayoutIndices x;
  const int64_t B = static_cast<int64_t>(chunks.size());
  x.num_seqs = B;
  int64_t N = 0;
  for (const auto& c : chunks) {
    SLLM_CHECK(c.seq && c.n > 0 && c.start >= 0 && c.start + c.n <= c.seq->length(),
               "chunk [{}, +{}) does not lie within its sequence's tokens", c.start, c.n);
    SLLM_CHECK(c.start + c.n <= mgr.length(c.seq->kv_id),
               "chunk [{}, +{}) has no KV slots: the sequence holds {} (append before the layout)",
               c.start, c.n, mgr.length(c.seq->kv_id));
    N += c.n;
    x.max_q = std::max(x.max_q, c.n);
    x.max_kv = std::max(x.max_kv, c.start + c.n);
  }
  x.need_mask = x.max_q > 1;
  x.tokens.resize(N);
  x.positions.resize(N);
  x.slot_mapping.resize(N);
  x.kv_slots.assign(B * x.max_kv, 0);
  int64_t off = 0;
  for (int64_t b = 0; b < B; ++b) {
    const Chunk& c = chunks[b];
    x.padded |= c.n != x.max_q;
    x.need_mask |= c.start + c.n != x.max_kv;
    x.chunk_start.push_back(c.start);
    x.chunk_len.push_back(c.n);
    for (int64_t j = 0; j < c.n; ++j) {
      x.tokens[off + j] = c.seq->tokens[c.start + j];
      x.positions[off + j] = c.start + j;
    }
    mgr.slots(c.seq->kv_id, static_cast<int32_t>(c.start), static_cast<int32_t>(c.n),
              x.slot_mapping.data() + off);
    mgr.slots(c.seq->kv_id, 0, static_cast<int32_t>(c.start + c.n),
              x.kv_slots.data() + b * x.max_kv);
    SLLM_CHECK(c.num_logits() <= c.n, "a chunk of {} tokens cannot verify {} draft tokens", c.n,
               c.seq->draft);
    for (int64_t j = c.num_logits(); j > 0; --j) x.logits_index.push_back(off + c.n - j);
    off += c.n;
  }
  if (x.padded) {
    x.q_gather.assign(B * x.max_q, 0);
    x.q_scatter.resize(N);
    int64_t o = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < x.chunk_len[b]; ++j, ++o) {
        x.q_gather[b * x.max_q + j] = o;
        x.q_scatter[o] = b * x.max_q + j;
      }
  }
  return x;
}

void fill_attn_mask(const LayoutIndices& x, float* out) {
  std::fill_n(out, x.num_seqs * x.max_q * x.max_kv, -std::numeric_limits<float>::infinity());
  for (int64_t b = 0; b < x.num_seqs; ++b)
    for (int64_t j = 0; j < x.max_q; ++j) {
      const int64_t last = j < x.chunk_len[b] ? x.chunk_start[b] + j : 0;
      std::fill_n(out + (b * x.max_q + j) * x.max_kv, last + 1, 0.f);
    }
}

}  // namespace sllm::engine
