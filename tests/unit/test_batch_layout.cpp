// Batch layout of an engine step, without a model: flattened tokens, positions and KV slots,
// the padded views and the causal mask, over several sequences, block boundaries, mixed decode
// and prefill chunks and a long prompt prefilled in chunks by the scheduler.
#include "engine/plan/batch_layout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "core/error.h"

namespace {

using sllm::engine::build_layout;
using sllm::engine::Chunk;
using sllm::engine::LayoutIndices;
using sllm::engine::Scheduler;
using sllm::engine::SeqState;
using sllm::kv::BlockManager;
using V = std::vector<int64_t>;

// A sequence of n tokens first, first + 1, ... with `computed` of them already in the cache.
SeqState make_seq(int64_t id, int32_t first, int n) {
  SeqState s;
  s.id = id;
  s.tokens.resize(n);
  std::iota(s.tokens.begin(), s.tokens.end(), first);
  return s;
}

std::vector<float> mask_of(const LayoutIndices& x) {
  std::vector<float> m(x.num_seqs * x.max_q * x.max_kv, 1.f);
  sllm::engine::fill_attn_mask(x, m.data());
  return m;
}

// Query j of sequence b sees keys 0..start+j; padded rows see key 0 only.
void expect_causal_mask(const LayoutIndices& x, const V& starts, const V& lens) {
  const auto m = mask_of(x);
  for (int64_t b = 0; b < x.num_seqs; ++b)
    for (int64_t j = 0; j < x.max_q; ++j)
      for (int64_t k = 0; k < x.max_kv; ++k) {
        const bool visible = j < lens[b] ? k <= starts[b] + j : k == 0;
        const float v = m[(b * x.max_q + j) * x.max_kv + k];
        if (visible)
          EXPECT_EQ(v, 0.f) << b << " " << j << " " << k;
        else
          EXPECT_TRUE(std::isinf(v) && v < 0) << b << " " << j << " " << k;
      }
}

TEST(BatchLayout, EqualDecodesNeedNoPaddingOrMask) {
  BlockManager mgr(8, 4);
  SeqState a = make_seq(0, 10, 3), b = make_seq(1, 20, 3);
  for (SeqState* s : {&a, &b}) {
    s->kv_id = mgr.add_sequence();
    mgr.append(s->kv_id, 3);
    s->computed = 2;
  }
  const auto x = build_layout({{&a, 2, 1}, {&b, 2, 1}}, mgr);
  EXPECT_EQ(x.num_seqs, 2);
  EXPECT_EQ(x.max_q, 1);
  EXPECT_EQ(x.max_kv, 3);
  EXPECT_FALSE(x.padded);
  EXPECT_FALSE(x.need_mask);
  EXPECT_EQ(x.tokens, (V{12, 22}));
  EXPECT_EQ(x.positions, (V{2, 2}));
  EXPECT_EQ(x.slot_mapping, (V{2, 6}));  // a in block 0, b in block 1
  EXPECT_EQ(x.kv_slots, (V{0, 1, 2, 4, 5, 6}));
  EXPECT_TRUE(x.q_gather.empty());
  EXPECT_TRUE(x.q_scatter.empty());
  EXPECT_EQ(x.logits_index, (V{0, 1}));
}

TEST(BatchLayout, DecodesOfDifferentLengthsAreMasked) {
  BlockManager mgr(8, 4);
  SeqState a = make_seq(0, 10, 2), b = make_seq(1, 20, 6);
  a.kv_id = mgr.add_sequence();
  mgr.append(a.kv_id, 2);
  b.kv_id = mgr.add_sequence();
  mgr.append(b.kv_id, 6);
  const auto x = build_layout({{&a, 1, 1}, {&b, 5, 1}}, mgr);
  EXPECT_FALSE(x.padded);
  EXPECT_TRUE(x.need_mask);
  EXPECT_EQ(x.max_kv, 6);
  EXPECT_EQ(x.kv_slots, (V{0, 1, 0, 0, 0, 0, 4, 5, 6, 7, 8, 9}));
  expect_causal_mask(x, {1, 5}, {1, 1});
}

TEST(BatchLayout, MixedDecodeAndPrefillChunk) {
  BlockManager mgr(16, 4);
  // a: 4 prompt tokens cached in block 0, one generated token pending at position 4.
  SeqState a = make_seq(0, 10, 5);
  a.kv_id = mgr.add_sequence();
  mgr.append(a.kv_id, 4);
  a.computed = 4;
  // b: a 7-token prompt, nothing cached (blocks 1, 2).
  SeqState b = make_seq(1, 20, 7);
  b.kv_id = mgr.add_sequence();
  mgr.append(b.kv_id, 7);
  mgr.append(a.kv_id, 1);  // crosses into a new block: 3
  const auto x = build_layout({{&a, 4, 1}, {&b, 0, 7}}, mgr);
  EXPECT_EQ(x.num_seqs, 2);
  EXPECT_EQ(x.num_tokens(), 8);
  EXPECT_EQ(x.max_q, 7);
  EXPECT_EQ(x.max_kv, 7);
  EXPECT_TRUE(x.padded);
  EXPECT_TRUE(x.need_mask);
  EXPECT_EQ(x.tokens, (V{14, 20, 21, 22, 23, 24, 25, 26}));
  EXPECT_EQ(x.positions, (V{4, 0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(x.slot_mapping, (V{12, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(x.kv_slots, (V{0, 1, 2, 3, 12, 0, 0, 4, 5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(x.q_gather, (V{0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(x.q_scatter, (V{0, 7, 8, 9, 10, 11, 12, 13}));
  EXPECT_EQ(x.logits_index, (V{0, 7}));  // both chunks reach their last token
  expect_causal_mask(x, {4, 0}, {1, 7});
}

TEST(BatchLayout, InterleavedBlockTables) {
  BlockManager mgr(8, 2);
  SeqState a = make_seq(0, 10, 5), b = make_seq(1, 20, 3);
  a.kv_id = mgr.add_sequence();
  b.kv_id = mgr.add_sequence();
  mgr.append(a.kv_id, 3);  // blocks 0, 1
  mgr.append(b.kv_id, 2);  // block 2
  mgr.append(a.kv_id, 2);  // block 3
  mgr.append(b.kv_id, 1);  // block 4
  a.computed = 3;
  b.computed = 2;
  const auto x = build_layout({{&a, 3, 2}, {&b, 2, 1}}, mgr);
  EXPECT_EQ(x.tokens, (V{13, 14, 22}));
  EXPECT_EQ(x.positions, (V{3, 4, 2}));
  EXPECT_EQ(x.slot_mapping, (V{3, 6, 8}));
  EXPECT_EQ(x.kv_slots, (V{0, 1, 2, 3, 6, 4, 5, 8, 0, 0}));
  EXPECT_EQ(x.q_gather, (V{0, 1, 2, 0}));
  EXPECT_EQ(x.q_scatter, (V{0, 1, 2}));
  EXPECT_EQ(x.logits_index, (V{1, 2}));
  expect_causal_mask(x, {3, 2}, {2, 1});
}

TEST(BatchLayout, LongPromptPrefilledInChunks) {
  BlockManager mgr(16, 4);
  Scheduler sched({4, 8}, mgr);
  SeqState s = make_seq(0, 100, 21);
  sched.enqueue(&s, 24);
  const V starts{0, 8, 16};
  const V lens{8, 8, 5};
  for (int step = 0; step < 3; ++step) {
    auto plan = sched.schedule();
    ASSERT_EQ(plan.chunks.size(), 1u);
    EXPECT_EQ(plan.chunks[0].start, starts[step]);
    EXPECT_EQ(plan.chunks[0].n, lens[step]);
    const auto x = build_layout(plan.chunks, mgr);
    EXPECT_EQ(x.max_q, lens[step]);
    EXPECT_EQ(x.max_kv, starts[step] + lens[step]);
    EXPECT_FALSE(x.padded);
    EXPECT_TRUE(x.need_mask);
    for (int64_t j = 0; j < lens[step]; ++j) {
      EXPECT_EQ(x.tokens[j], 100 + starts[step] + j);
      EXPECT_EQ(x.positions[j], starts[step] + j);
      EXPECT_EQ(x.slot_mapping[j], starts[step] + j);  // blocks 0.. in order
    }
    V all(starts[step] + lens[step]);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(x.kv_slots, all);
    // Only the chunk that reaches the prompt's end is sampled.
    EXPECT_EQ(x.logits_index, step == 2 ? V{4} : V{});
    expect_causal_mask(x, {starts[step]}, {lens[step]});
    s.computed += plan.chunks[0].n;
  }
  s.tokens.push_back(7);  // the sampled token, then one decode step
  auto plan = sched.schedule();
  const auto x = build_layout(plan.chunks, mgr);
  EXPECT_EQ(x.tokens, V{7});
  EXPECT_EQ(x.positions, V{21});
  EXPECT_EQ(x.slot_mapping, V{21});
  EXPECT_FALSE(x.need_mask);
  EXPECT_EQ(x.logits_index, V{0});
}

TEST(BatchLayout, SameInputSameLayout) {
  BlockManager mgr(8, 4);
  SeqState a = make_seq(0, 10, 9);
  a.kv_id = mgr.add_sequence();
  mgr.append(a.kv_id, 9);
  const std::vector<Chunk> chunks{{&a, 0, 9}};
  const auto x = build_layout(chunks, mgr), y = build_layout(chunks, mgr);
  EXPECT_EQ(x.tokens, y.tokens);
  EXPECT_EQ(x.kv_slots, y.kv_slots);
  EXPECT_EQ(x.slot_mapping, y.slot_mapping);
  EXPECT_EQ(mgr.length(a.kv_id), 9);  // the builder only reads the block tables
}

TEST(BatchLayout, ChunksWithoutSlotsAreErrors) {
  BlockManager mgr(8, 4);
  SeqState a = make_seq(0, 10, 6);
  a.kv_id = mgr.add_sequence();
  mgr.append(a.kv_id, 4);
  EXPECT_THROW(build_layout({{&a, 0, 6}}, mgr), sllm::Error);  // slots 4, 5 not appended
  EXPECT_THROW(build_layout({{&a, 4, 3}}, mgr), sllm::Error);  // past the tokens
  EXPECT_THROW(build_layout({{&a, 0, 0}}, mgr), sllm::Error);  // empty chunk
  const auto x = build_layout({}, mgr);
  EXPECT_EQ(x.num_seqs, 0);
  EXPECT_TRUE(x.tokens.empty());
}

}  // namespace
