// KV block bookkeeping: allocation, exhaustion, fork/copy-on-write, truncate, stats, and a
// randomized run against a simple reference model of the same operations.
#include "kv/block_manager.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "core/error.h"

namespace {

using sllm::kv::BlockManager;
using sllm::kv::CopyOp;
using sllm::kv::SeqId;

TEST(KvBlockManager, BlocksNeededAndBytes) {
  EXPECT_EQ(BlockManager::blocks_needed(0, 16), 0);
  EXPECT_EQ(BlockManager::blocks_needed(1, 16), 1);
  EXPECT_EQ(BlockManager::blocks_needed(16, 16), 1);
  EXPECT_EQ(BlockManager::blocks_needed(17, 16), 2);
  EXPECT_THROW(BlockManager::blocks_needed(-1, 16), sllm::Error);
  // 2 * 22 layers * 4 kv heads * 64 dims * 2048 tokens * 2 bytes
  EXPECT_EQ(sllm::kv::kv_bytes(22, 4, 64, 2048, 2), 2ull * 22 * 4 * 64 * 2048 * 2);
  EXPECT_THROW(BlockManager(4, 0), sllm::Error);
}

TEST(KvBlockManager, AllocatesAcrossBlockBoundaries) {
  BlockManager m(8, 4);
  const SeqId s = m.add_sequence();
  EXPECT_EQ(m.length(s), 0);
  EXPECT_TRUE(m.block_table(s).empty());
  EXPECT_TRUE(m.append(s, 3).empty());
  EXPECT_EQ(m.block_table(s).size(), 1u);
  EXPECT_TRUE(m.append(s, 1).empty());  // fills block 0 exactly
  EXPECT_EQ(m.block_table(s).size(), 1u);
  EXPECT_TRUE(m.append(s, 6).empty());  // 10 tokens: 3 blocks
  EXPECT_EQ(m.length(s), 10);
  ASSERT_EQ(m.block_table(s).size(), 3u);
  EXPECT_EQ(m.num_free_blocks(), 5);
  const auto& bt = m.block_table(s);
  EXPECT_EQ(bt, (std::vector<int32_t>{0, 1, 2}));  // fresh pool hands out 0, 1, 2, ...
  std::vector<int64_t> sl(10);
  m.slots(s, 0, 10, sl.data());
  for (int32_t p = 0; p < 10; ++p) {
    EXPECT_EQ(sl[p], int64_t{bt[p / 4]} * 4 + p % 4);
    EXPECT_EQ(m.slot(s, p), sl[p]);
  }
  EXPECT_THROW(m.slot(s, 10), sllm::Error);
  EXPECT_THROW(m.slots(s, 8, 3, sl.data()), sllm::Error);
  EXPECT_TRUE(m.append(s, 0).empty());
}

TEST(KvBlockManager, ExhaustionLeavesStateUnchanged) {
  BlockManager m(3, 4);
  const SeqId a = m.add_sequence(), b = m.add_sequence();
  m.append(a, 6);  // 2 blocks
  EXPECT_TRUE(m.can_append(b, 4));
  EXPECT_FALSE(m.can_append(b, 5));
  const auto before = m.block_table(b);
  try {
    m.append(b, 5);
    FAIL() << "expected the cache to be full";
  } catch (const sllm::Error& e) {
    EXPECT_EQ(std::string(e.what()), "KV cache is full: need 2 blocks, 1 free");
  }
  EXPECT_EQ(m.length(b), 0);
  EXPECT_EQ(m.block_table(b), before);
  EXPECT_EQ(m.num_free_blocks(), 1);
  EXPECT_EQ(m.stats().used_tokens, 6);
  m.append(a, 2);  // fits in a's second block: no new block
  EXPECT_EQ(m.num_free_blocks(), 1);
  EXPECT_TRUE(m.append(b, 4).empty());
  EXPECT_EQ(m.num_free_blocks(), 0);
  EXPECT_FALSE(m.can_append(a, 1));
}

TEST(KvBlockManager, ForkCopyOnWriteOfSharedPartialBlock) {
  BlockManager m(8, 4);
  const SeqId p = m.add_sequence();
  m.append(p, 6);  // blocks {0, 1}, block 1 holds 2 tokens
  const SeqId c = m.fork(p);
  EXPECT_EQ(m.block_table(c), m.block_table(p));
  EXPECT_EQ(m.length(c), 6);
  EXPECT_EQ(m.refcount(0), 2);
  EXPECT_EQ(m.refcount(1), 2);
  EXPECT_EQ(m.num_free_blocks(), 6);  // forking takes no blocks

  // The child writes into the shared partial block: it gets a copy of its 2 tokens.
  const auto ops = m.append(c, 1);
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].src_block, 1);
  EXPECT_EQ(ops[0].ntokens, 2);
  const int32_t copy = ops[0].dst_block;
  EXPECT_NE(copy, 1);
  EXPECT_EQ(m.block_table(c), (std::vector<int32_t>{0, copy}));
  EXPECT_EQ(m.block_table(p), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(m.refcount(0), 2);
  EXPECT_EQ(m.refcount(1), 1);
  EXPECT_EQ(m.refcount(copy), 1);
  // Now the parent owns block 1 alone: no copy needed.
  EXPECT_TRUE(m.append(p, 2).empty());
  EXPECT_EQ(m.block_table(p), (std::vector<int32_t>{0, 1}));
  // The full shared block 0 is never copied.
  EXPECT_EQ(m.slot(c, 0), m.slot(p, 0));
  EXPECT_NE(m.slot(c, 5), m.slot(p, 5));
}

TEST(KvBlockManager, ForkAtBlockBoundaryNeedsNoCopy) {
  BlockManager m(4, 4);
  const SeqId p = m.add_sequence();
  m.append(p, 4);
  const SeqId c = m.fork(p);
  EXPECT_TRUE(m.append(c, 1).empty());  // new block, shared block 0 stays full and shared
  EXPECT_EQ(m.refcount(0), 2);
  EXPECT_EQ(m.num_free_blocks(), 2);
}

TEST(KvBlockManager, CopyOnWriteCountsTowardsExhaustion) {
  BlockManager m(2, 4);
  const SeqId p = m.add_sequence();
  m.append(p, 6);  // both blocks
  const SeqId c = m.fork(p);
  EXPECT_FALSE(m.can_append(c, 1));  // would need a block for the copy
  EXPECT_THROW(m.append(c, 1), sllm::Error);
  EXPECT_EQ(m.block_table(c), m.block_table(p));
  EXPECT_EQ(m.refcount(1), 2);
  m.free(p);  // now c holds block 1 alone and can write in place
  EXPECT_TRUE(m.append(c, 2).empty());
}

TEST(KvBlockManager, FreeAndRefcountsWithSeveralForks) {
  BlockManager m(6, 4);
  const SeqId a = m.add_sequence();
  m.append(a, 8);  // blocks {0, 1}
  const SeqId b = m.fork(a), c = m.fork(a), d = m.fork(b);
  EXPECT_EQ(m.refcount(0), 4);
  EXPECT_EQ(m.stats().num_sequences, 4);
  EXPECT_EQ(m.stats().used_tokens, 32);
  m.free(a);
  m.free(c);
  EXPECT_EQ(m.refcount(0), 2);
  EXPECT_EQ(m.num_free_blocks(), 4);
  EXPECT_FALSE(m.has_sequence(a));
  EXPECT_THROW(m.length(a), sllm::Error);
  EXPECT_THROW(m.free(a), sllm::Error);
  m.free(b);
  EXPECT_EQ(m.num_free_blocks(), 4);
  m.free(d);
  EXPECT_EQ(m.num_free_blocks(), 6);
  EXPECT_EQ(m.refcount(0), 0);
  const auto st = m.stats();
  EXPECT_EQ(st.used_blocks, 0);
  EXPECT_EQ(st.used_tokens, 0);
  EXPECT_EQ(st.utilization, 0.0);
  EXPECT_EQ(st.peak_used_blocks, 2);
  // Freed blocks are reused.
  const SeqId e = m.add_sequence();
  m.append(e, 24);
  EXPECT_EQ(m.num_free_blocks(), 0);
}

TEST(KvBlockManager, Truncate) {
  BlockManager m(8, 4);
  const SeqId s = m.add_sequence();
  m.append(s, 10);  // 3 blocks
  m.truncate(s, 8);
  EXPECT_EQ(m.length(s), 8);
  EXPECT_EQ(m.block_table(s).size(), 2u);
  EXPECT_EQ(m.num_free_blocks(), 6);
  m.truncate(s, 5);
  EXPECT_EQ(m.block_table(s).size(), 2u);  // block 1 still holds position 4
  EXPECT_THROW(m.truncate(s, 6), sllm::Error);
  EXPECT_THROW(m.truncate(s, -1), sllm::Error);
  // Truncating into a shared block and appending copies it.
  const SeqId c = m.fork(s);
  m.truncate(c, 2);
  EXPECT_EQ(m.refcount(m.block_table(s)[1]), 1);
  const auto ops = m.append(c, 1);
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(ops[0].ntokens, 2);
  EXPECT_EQ(ops[0].src_block, m.block_table(s)[0]);
  m.truncate(s, 0);
  EXPECT_TRUE(m.block_table(s).empty());
  EXPECT_EQ(m.stats().used_tokens, 3);
}

TEST(KvBlockManager, Stats) {
  BlockManager m(10, 16);
  const SeqId a = m.add_sequence(), b = m.add_sequence();
  m.append(a, 20);
  m.append(b, 12);
  const auto st = m.stats();
  EXPECT_EQ(st.num_blocks, 10);
  EXPECT_EQ(st.block_size, 16);
  EXPECT_EQ(st.used_blocks, 3);
  EXPECT_EQ(st.free_blocks, 7);
  EXPECT_EQ(st.used_tokens, 32);
  EXPECT_EQ(st.num_sequences, 2);
  EXPECT_DOUBLE_EQ(st.utilization, 32.0 / 48.0);
  EXPECT_EQ(st.peak_used_blocks, 3);
  m.free(a);
  EXPECT_EQ(m.stats().peak_used_blocks, 3);
  EXPECT_EQ(m.stats().used_blocks, 1);
}

TEST(KvBlockManager, UnknownSequence) {
  BlockManager m(4);
  EXPECT_EQ(m.block_size(), 16);
  EXPECT_EQ(m.num_blocks(), 4);
  EXPECT_THROW(m.append(42, 1), sllm::Error);
  EXPECT_THROW(m.fork(42), sllm::Error);
  EXPECT_THROW(m.block_table(42), sllm::Error);
  EXPECT_THROW(m.can_append(42, 1), sllm::Error);
  const SeqId s = m.add_sequence();
  EXPECT_THROW(m.append(s, -1), sllm::Error);
}

// Reference model: each sequence is a list of token "contents" (unique ids). Checks that every
// position maps to a slot holding its own token after the copy ops are applied, that no slot of
// a block is written while another sequence still reads it, and the pool invariants.
TEST(KvBlockManager, RandomizedAgainstModel) {
  constexpr int32_t kBlocks = 24, kBs = 4;
  BlockManager m(kBlocks, kBs);
  std::mt19937 rng(1234);
  std::map<SeqId, std::vector<int64_t>> model;      // token contents per sequence
  std::vector<int64_t> storage(kBlocks * kBs, -1);  // what the "engine" wrote per slot
  int64_t next_token = 0;
  int32_t peak = 0;

  auto check = [&] {
    std::map<int32_t, int32_t> owners;
    int64_t tokens = 0;
    for (const auto& [s, toks] : model) {
      ASSERT_TRUE(m.has_sequence(s));
      ASSERT_EQ(m.length(s), static_cast<int32_t>(toks.size()));
      const auto& bt = m.block_table(s);
      ASSERT_EQ(bt.size(), static_cast<size_t>(BlockManager::blocks_needed(toks.size(), kBs)));
      std::set<int32_t> own(bt.begin(), bt.end());
      ASSERT_EQ(own.size(), bt.size()) << "a sequence holds a block twice";
      for (int32_t b : bt) owners[b]++;
      for (size_t p = 0; p < toks.size(); ++p) ASSERT_EQ(storage[m.slot(s, int32_t(p))], toks[p]);
      tokens += static_cast<int64_t>(toks.size());
    }
    for (int32_t b = 0; b < kBlocks; ++b) ASSERT_EQ(m.refcount(b), owners.count(b) ? owners[b] : 0);
    const auto st = m.stats();
    ASSERT_EQ(st.used_blocks + st.free_blocks, kBlocks);
    ASSERT_EQ(st.used_blocks, static_cast<int32_t>(owners.size()));
    ASSERT_EQ(st.used_tokens, tokens);
    ASSERT_EQ(st.num_sequences, static_cast<int64_t>(model.size()));
    peak = std::max(peak, st.used_blocks);
    ASSERT_EQ(st.peak_used_blocks, peak);
  };

  for (int step = 0; step < 3000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    std::vector<SeqId> ids;
    for (const auto& kv : model) ids.push_back(kv.first);
    const SeqId s = ids.empty() ? -1 : ids[rng() % ids.size()];
    if (ids.empty() || op == 0) {
      model[m.add_sequence()] = {};
    } else if (op <= 4) {  // append
      const auto n = static_cast<int32_t>(rng() % 9);
      const bool fits = m.can_append(s, n);
      const int32_t free_before = m.num_free_blocks();
      const auto table_before = m.block_table(s);
      std::vector<CopyOp> ops;
      try {
        ops = m.append(s, n);
        ASSERT_TRUE(fits);
      } catch (const sllm::Error&) {
        ASSERT_FALSE(fits);
        ASSERT_EQ(m.num_free_blocks(), free_before);
        ASSERT_EQ(m.block_table(s), table_before);
        continue;
      }
      for (const auto& c : ops)
        for (int32_t i = 0; i < c.ntokens; ++i)
          storage[c.dst_block * kBs + i] = storage[c.src_block * kBs + i];
      // Before writing, the slots written must belong to s alone.
      auto& toks = model[s];
      for (int32_t i = 0; i < n; ++i) {
        const int32_t pos = static_cast<int32_t>(toks.size());
        toks.push_back(next_token++);
        ASSERT_EQ(m.refcount(m.block_table(s)[pos / kBs]), 1) << "write into a shared block";
        storage[m.slot(s, pos)] = toks.back();
      }
    } else if (op <= 6) {
      model[m.fork(s)] = model[s];
    } else if (op == 7) {
      const auto len = static_cast<int32_t>(model[s].size());
      const int32_t to = len == 0 ? 0 : static_cast<int32_t>(rng() % (len + 1));
      m.truncate(s, to);
      model[s].resize(to);
    } else {
      m.free(s);
      model.erase(s);
    }
    check();
    if (HasFatalFailure()) return;
  }
  for (const auto& kv : model) m.free(kv.first);
  EXPECT_EQ(m.num_free_blocks(), kBlocks);
}

}  // namespace
