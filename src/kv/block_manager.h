// Paged KV-cache bookkeeping (as in vLLM), no tensors: a pool of fixed-size blocks of
// block_size token slots; each sequence owns a block table. Forked sequences share blocks
// by refcount; appending into a shared, partly filled last block copies it first
// (copy-on-write) and returns the copy for the engine to perform on the K/V tensors. With
// prefix caching on, full computed blocks stay indexed by their tokens (PrefixCache) after their
// sequences end, and a new sequence starting with the same tokens shares them.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kv/prefix_cache.h"

namespace sllm::kv {

using SeqId = int64_t;

// Copy the first ntokens slots of src_block into dst_block (K and V, every layer).
struct CopyOp {
  int32_t src_block, dst_block;
  int32_t ntokens;
};

struct UsageStats {
  int32_t num_blocks, block_size, used_blocks, free_blocks;
  int32_t cached_blocks;  // of the free blocks, those that hold a cached prefix (evictable)
  int64_t used_tokens;    // sum of sequence lengths (shared tokens count once per sequence)
  int64_t num_sequences;
  double utilization;  // used_tokens / (used_blocks * block_size); can exceed 1 with forks
  int32_t peak_used_blocks;
};

class BlockManager {
 public:
  BlockManager(int32_t num_blocks, int32_t block_size = 16);

  SeqId add_sequence();  // an empty sequence
  // Whether append(s, ntokens) would find enough free blocks.
  bool can_append(SeqId s, int32_t ntokens) const;
  // Reserves slots for ntokens more tokens. Returns the copies to do when the last block was
  // shared. Throws sllm::Error ("KV cache is full: ...") without changing anything if short.
  std::vector<CopyOp> append(SeqId s, int32_t ntokens);
  SeqId fork(SeqId parent);  // the child shares all the parent's blocks
  void free(SeqId s);        // its blocks go back to the pool when no one else holds them
  void truncate(SeqId s, int32_t new_length);  // drops tokens at the end

  // Prefix caching; turned on before the first sequence. hash_mask narrows the block hash (only
  // tests want collisions).
  void enable_prefix_caching(uint64_t hash_mask = ~uint64_t{0});
  bool prefix_caching() const { return cache_ != nullptr; }
  // For an empty sequence about to compute tokens[0, n): shares the longest run of cached full
  // blocks that hold its first tokens, leaving at least the last token to compute (its logits
  // are wanted). Returns the tokens shared (a multiple of block_size; 0 with caching off).
  // salt keeps sequences whose K/V differ for the same tokens apart (e.g. a served LoRA
  // adapter's id): blocks are shared only between sequences of the same salt.
  int32_t share_prefix(SeqId s, const int32_t* tokens, int32_t n, int64_t salt = 0);
  // Indexes s's full blocks within its first n tokens (K/V computed, tokens[0, n) final) in the
  // prefix cache, so they outlive s. No-op with caching off.
  void cache_blocks(SeqId s, const int32_t* tokens, int32_t n);
  // New blocks append(s, ntokens) would take.
  int32_t blocks_to_append(SeqId s, int32_t ntokens) const {
    return blocks_for_append(get(s), ntokens);
  }

  int32_t length(SeqId s) const;
  const std::vector<int32_t>& block_table(SeqId s) const;
  // block_table[pos / bs] * bs + pos % bs, for 0 <= pos < length.
  int64_t slot(SeqId s, int32_t pos) const;
  // out[i] = slot(s, start + i) for i in [0, n).
  void slots(SeqId s, int32_t start, int32_t n, int64_t* out) const;

  UsageStats stats() const;
  // Blocks a sequence can take: never used, or cached and held by nobody (evicted when taken).
  int32_t num_free_blocks() const {
    return static_cast<int32_t>(free_.size()) + (cache_ ? cache_->num_evictable() : 0);
  }
  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return num_blocks_; }
  bool has_sequence(SeqId s) const { return seqs_.count(s) > 0; }
  int32_t refcount(int32_t block) const;  // for tests and debugging

  static int32_t blocks_needed(int64_t ntokens, int32_t block_size);

 private:
  struct Seq {
    std::vector<int32_t> blocks;
    int32_t length = 0;
    // Prefix caching: (hash, content node) of each leading full block already cached.
    std::vector<std::pair<uint64_t, int64_t>> chain;
    int64_t salt = 0;  // share_prefix's
  };
  Seq& get(SeqId s);
  const Seq& get(SeqId s) const;
  // New blocks append() would take: growth plus one for a copy-on-write of the last block.
  int32_t blocks_for_append(const Seq& q, int32_t ntokens) const;
  int32_t take_block();
  void hold(int32_t block);  // one more reference (a cached block may be evictable)
  void release(int32_t block);

  int32_t num_blocks_, block_size_;
  std::vector<int32_t> refcount_;  // per block; 0 = free
  std::vector<int32_t> free_;      // LIFO stack of free blocks that hold no cached prefix
  std::unique_ptr<PrefixCache> cache_;
  std::unordered_map<SeqId, Seq> seqs_;
  SeqId next_id_ = 0;
  int64_t used_tokens_ = 0;
  int32_t peak_used_ = 0;
};

// Bytes of KV storage: 2 (K and V) * layers * kv_heads * head_dim * tokens * bytes_per_elem.
uint64_t kv_bytes(int64_t layers, int64_t kv_heads, int64_t head_dim, int64_t tokens,
                  int64_t bytes_per_elem);

}  // namespace sllm::kv
