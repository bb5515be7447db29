// Prefix caching in the KV block pool: sharing cached full blocks, refcounts, LRU eviction of
// the blocks nobody holds (never of a held one), truncation into a cached block, and exact
// matching when every hash collides.
#include <gtest/gtest.h>

#include <map>
#include <numeric>
#include <random>

#include "core/error.h"
#include "kv/block_manager.h"

namespace {

using sllm::kv::BlockManager;
using sllm::kv::SeqId;
using Tokens = std::vector<int32_t>;

Tokens iota(int n, int32_t from) {
  Tokens t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), from);
  return t;
}

Tokens cat(Tokens a, const Tokens& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// A sequence that computed tokens and cached its full blocks; its id.
SeqId computed(BlockManager& m, const Tokens& t) {
  const SeqId s = m.add_sequence();
  m.append(s, static_cast<int32_t>(t.size()));
  m.cache_blocks(s, t.data(), static_cast<int32_t>(t.size()));
  return s;
}

// The tokens a fresh sequence shares of t (it keeps holding them).
int32_t shared(BlockManager& m, const Tokens& t, SeqId* out = nullptr) {
  const SeqId s = m.add_sequence();
  const int32_t n = m.share_prefix(s, t.data(), static_cast<int32_t>(t.size()));
  EXPECT_EQ(m.length(s), n);
  if (out) *out = s;
  return n;
}

TEST(KvPrefixCache, OffByDefault) {
  BlockManager m(8, 4);
  const Tokens t = iota(10, 0);
  m.free(computed(m, t));
  EXPECT_FALSE(m.prefix_caching());
  EXPECT_EQ(shared(m, t), 0);
  EXPECT_EQ(m.stats().cached_blocks, 0);
}

TEST(KvPrefixCache, SharesCachedFullBlocks) {
  BlockManager m(8, 4);
  m.enable_prefix_caching();
  const Tokens t = iota(10, 0);
  const SeqId a = computed(m, t);
  const auto blocks = m.block_table(a);
  m.free(a);  // the two full blocks stay cached, the partial one is free
  EXPECT_EQ(m.num_free_blocks(), 8);
  EXPECT_EQ(m.stats().cached_blocks, 2);
  EXPECT_EQ(m.stats().used_blocks, 0);

  SeqId b;
  EXPECT_EQ(shared(m, cat(iota(8, 0), {77, 78}), &b), 8);
  EXPECT_EQ(m.block_table(b), (Tokens{blocks[0], blocks[1]}));
  EXPECT_EQ(m.refcount(blocks[0]), 1);
  EXPECT_EQ(m.stats().cached_blocks, 0);  // held again: not evictable
  EXPECT_EQ(m.stats().used_blocks, 2);
  // b continues in a block of its own.
  m.append(b, 2);
  EXPECT_EQ(m.block_table(b).size(), 3u);
  EXPECT_EQ(m.refcount(m.block_table(b)[2]), 1);

  // The last token is always left to compute: 8 tokens share one block, not two.
  EXPECT_EQ(shared(m, iota(8, 0)), 4);
  EXPECT_EQ(m.refcount(blocks[0]), 2);
  // A different start shares nothing; a different second block shares the first.
  EXPECT_EQ(shared(m, iota(10, 1)), 0);
  EXPECT_EQ(shared(m, cat(iota(4, 0), iota(6, 50))), 4);
  EXPECT_EQ(m.refcount(blocks[0]), 3);
}

TEST(KvPrefixCache, ReferencedBlocksAreNeverEvicted) {
  BlockManager m(4, 4);
  m.enable_prefix_caching();
  const Tokens t = iota(9, 0);
  m.free(computed(m, t));
  SeqId b;
  ASSERT_EQ(shared(m, t, &b), 8);  // b holds both cached blocks
  const auto held = m.block_table(b);
  // The rest of the pool goes to another sequence; b's blocks are not free.
  EXPECT_EQ(m.num_free_blocks(), 2);
  const SeqId c = m.add_sequence();
  m.append(c, 8);
  EXPECT_FALSE(m.can_append(c, 1));
  EXPECT_THROW(m.append(c, 1), sllm::Error);
  for (int32_t blk : m.block_table(c)) EXPECT_TRUE(blk != held[0] && blk != held[1]);
  // Once b ends they are evictable again, and only then taken.
  m.free(b);
  EXPECT_EQ(m.stats().cached_blocks, 2);
  m.append(c, 8);
  EXPECT_EQ(m.num_free_blocks(), 0);
  EXPECT_EQ(m.stats().cached_blocks, 0);
  m.free(c);
  EXPECT_EQ(shared(m, t), 0);  // evicted (c's own blocks were never cached)
}

TEST(KvPrefixCache, EvictsLeastRecentlyUsedFirst) {
  BlockManager m(6, 4);
  m.enable_prefix_caching();
  const Tokens a = iota(5, 0), b = iota(5, 100), c = iota(5, 200);
  m.free(computed(m, a));
  m.free(computed(m, b));
  m.free(computed(m, c));
  EXPECT_EQ(m.stats().cached_blocks, 3);
  // Touch a: it becomes the most recently used.
  SeqId s;
  ASSERT_EQ(shared(m, a, &s), 4);
  m.free(s);
  // Taking all three never-used blocks and then one more evicts b, the least recently used.
  const SeqId x = m.add_sequence();
  m.append(x, 16);
  EXPECT_EQ(m.stats().cached_blocks, 2);
  EXPECT_EQ(shared(m, b), 0);
  EXPECT_EQ(shared(m, c), 4);
  EXPECT_EQ(shared(m, a), 4);
}

TEST(KvPrefixCache, EndingSequenceEvictsItsTailFirst) {
  BlockManager m(4, 4);
  m.enable_prefix_caching();
  const Tokens t = iota(17, 0);
  const SeqId a = m.add_sequence();
  m.append(a, 16);
  m.cache_blocks(a, t.data(), 16);
  m.free(a);
  EXPECT_EQ(m.stats().cached_blocks, 4);
  const SeqId b = m.add_sequence();
  m.append(b, 8);  // two blocks: a's last two go
  EXPECT_EQ(shared(m, t), 8);
}

TEST(KvPrefixCache, TruncatedCachedBlockLeavesTheCacheWhenWritten) {
  BlockManager m(8, 4);
  m.enable_prefix_caching();
  const Tokens t = iota(9, 0);
  const SeqId a = computed(m, iota(8, 0));
  m.truncate(a, 6);  // its K/V are untouched: still a valid cached block
  m.free(a);
  SeqId b;
  ASSERT_EQ(shared(m, t, &b), 8);
  m.truncate(b, 6);
  EXPECT_TRUE(m.append(b, 2).empty());  // b alone holds it: written in place, so uncached
  m.free(b);
  EXPECT_EQ(shared(m, t), 4);
}

TEST(KvPrefixCache, TruncatingIntoASharedCachedBlockCopiesOnWrite) {
  BlockManager m(8, 4);
  m.enable_prefix_caching();
  const Tokens t = iota(9, 0);
  m.free(computed(m, t));
  SeqId a, b;
  ASSERT_EQ(shared(m, t, &a), 8);
  ASSERT_EQ(shared(m, t, &b), 8);
  m.truncate(a, 6);
  const auto ops = m.append(a, 2);
  ASSERT_EQ(ops.size(), 1u);  // the cached block stays as it was
  EXPECT_EQ(ops[0].src_block, m.block_table(b)[1]);
  m.free(a);
  m.free(b);
  EXPECT_EQ(shared(m, t), 8);
}

TEST(KvPrefixCache, CollidingHashesNeverMatchOtherTokens) {
  BlockManager m(16, 4);
  m.enable_prefix_caching(/*hash_mask=*/0);  // every block hashes to 0
  const Tokens x = iota(4, 0), y = iota(4, 10), z = iota(4, 20), w = iota(4, 30);
  m.free(computed(m, cat(x, y)));
  m.free(computed(m, cat(z, w)));
  EXPECT_EQ(m.stats().cached_blocks, 4);
  // Each block compares its tokens and the block before it, not the hash only.
  EXPECT_EQ(shared(m, cat(cat(x, y), {1})), 8);
  EXPECT_EQ(shared(m, cat(cat(z, w), {1})), 8);
  EXPECT_EQ(shared(m, cat(cat(z, y), {1})), 4);  // y follows x, not z
  EXPECT_EQ(shared(m, cat(cat(x, w), {1})), 4);
  EXPECT_EQ(shared(m, cat(iota(4, 5), {1})), 0);
}

TEST(KvPrefixCache, DuplicateBlocksComputedSideBySide) {
  BlockManager m(8, 4);
  m.enable_prefix_caching();
  const Tokens t = iota(9, 0);
  const SeqId a = computed(m, t), b = computed(m, t);  // the same prompt, computed twice
  const auto first = m.block_table(a);
  m.free(b);  // b's copies were never cached: they are plain free blocks
  EXPECT_EQ(m.stats().cached_blocks, 0);
  m.free(a);
  EXPECT_EQ(m.stats().cached_blocks, 2);
  SeqId c;
  ASSERT_EQ(shared(m, t, &c), 8);
  EXPECT_EQ(m.block_table(c), (Tokens{first[0], first[1]}));
  EXPECT_THROW(m.enable_prefix_caching(), sllm::Error);  // not with sequences alive
}

// Random sequences over a few common prompt starts, with a shadow of what every slot holds:
// appends write their tokens, copy-on-write copies, and after every operation each live
// sequence reads its own tokens through its block table, and every shared prefix holds the
// tokens it was shared for. A block reused while cached or held would break this.
void random_run(uint64_t hash_mask, uint32_t seed) {
  const int32_t kBlocks = 24, kBs = 4;
  BlockManager m(kBlocks, kBs);
  m.enable_prefix_caching(hash_mask);
  std::vector<int32_t> slot_token(kBlocks * kBs, -1);
  std::map<SeqId, Tokens> live;
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  const Tokens bases[3] = {iota(24, 0), iota(24, 100), cat(iota(8, 0), iota(16, 200))};
  auto write = [&](SeqId s, int32_t from, const std::vector<sllm::kv::CopyOp>& ops) {
    for (const auto& op : ops)
      for (int32_t i = 0; i < op.ntokens; ++i)
        slot_token[op.dst_block * kBs + i] = slot_token[op.src_block * kBs + i];
    const Tokens& t = live[s];
    for (int32_t p = from; p < static_cast<int32_t>(t.size()); ++p) slot_token[m.slot(s, p)] = t[p];
    m.cache_blocks(s, t.data(), static_cast<int32_t>(t.size()));
  };
  int64_t hits = 0;
  for (int step = 0; step < 3000; ++step) {
    const int op = pick(10);
    if (op < 4 || live.empty()) {  // a new request
      const Tokens& base = bases[pick(3)];
      Tokens t(base.begin(), base.begin() + 1 + pick(24));
      if (pick(3) == 0) t.back() = 300 + pick(5);
      const SeqId s = m.add_sequence();
      const int32_t n = static_cast<int32_t>(t.size());
      const int32_t sh = m.share_prefix(s, t.data(), n);
      ASSERT_LT(sh, n);
      for (int32_t p = 0; p < sh; ++p) ASSERT_EQ(slot_token[m.slot(s, p)], t[p]) << step;
      hits += sh;
      if (!m.can_append(s, n - sh)) {
        m.free(s);
        continue;
      }
      live[s] = t;
      write(s, sh, m.append(s, n - sh));
    } else {
      auto it = std::next(live.begin(), pick(static_cast<int>(live.size())));
      const SeqId s = it->first;
      if (op < 7) {  // generates a few tokens
        const int32_t k = 1 + pick(5);
        if (!m.can_append(s, k)) continue;
        const auto from = static_cast<int32_t>(it->second.size());
        for (int32_t i = 0; i < k; ++i) it->second.push_back(400 + pick(3));
        write(s, from, m.append(s, k));
      } else if (op < 8) {  // rejected drafts
        const auto len = static_cast<int32_t>(it->second.size());
        const int32_t keep = len - pick(std::min(len, 6));
        m.truncate(s, keep);
        it->second.resize(static_cast<size_t>(keep));
      } else {
        m.free(s);
        live.erase(it);
      }
    }
    const auto st = m.stats();
    ASSERT_EQ(st.used_blocks + st.free_blocks, kBlocks);
    for (const auto& [s, t] : live) {
      ASSERT_EQ(m.length(s), static_cast<int32_t>(t.size()));
      for (int32_t p = 0; p < m.length(s); ++p)
        ASSERT_EQ(slot_token[m.slot(s, p)], t[p])
            << "step " << step << " seq " << s << " pos " << p;
    }
  }
  EXPECT_GT(hits, 0);
  for (const auto& [s, t] : live) m.free(s);
  EXPECT_EQ(m.stats().used_blocks, 0);
}

TEST(KvPrefixCache, RandomRunKeepsEverySequencesTokens) {
  for (uint32_t seed = 1; seed <= 8; ++seed) random_run(~uint64_t{0}, seed);
}

TEST(KvPrefixCache, RandomRunWithCollidingHashes) {
  for (uint32_t seed = 1; seed <= 8; ++seed) random_run(3, seed);
}

}  // namespace

// Sequences of different salts (served LoRA adapters: other K/V for the same tokens) never share.
TEST(KvPrefixCache, SaltsKeepSequencesApart) {
  BlockManager m(16, 4);
  m.enable_prefix_caching();
  const Tokens t = iota(10, 0);
  const SeqId a = m.add_sequence();
  EXPECT_EQ(m.share_prefix(a, t.data(), 10, /*salt=*/2), 0);
  m.append(a, 10);
  m.cache_blocks(a, t.data(), 10);
  m.free(a);
  for (const int64_t salt : {0, 1, 3}) {
    const SeqId s = m.add_sequence();
    EXPECT_EQ(m.share_prefix(s, t.data(), 10, salt), 0) << salt;
    m.free(s);
  }
  const SeqId b = m.add_sequence();
  EXPECT_EQ(m.share_prefix(b, t.data(), 10, 2), 8);
  EXPECT_THROW(m.share_prefix(m.add_sequence(), t.data(), 10, -1), sllm::Error);
}
