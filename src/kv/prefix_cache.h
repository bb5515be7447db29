// The prefix cache of the KV block pool (as in vLLM's automatic prefix caching): full blocks
// whose K/V are computed are indexed by a hash of (the previous block's hash, the block's token
// ids), so a request whose prompt starts with the same tokens shares them instead of computing
// them again. A lookup compares the tokens and the exact predecessor too, never the hash alone,
// so a collision costs a miss, never wrong K/V. Cached blocks nobody holds stay evictable, least
// recently used first. Bookkeeping only: BlockManager owns the refcounts and the free pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <unordered_map>
#include <vector>

namespace sllm::kv {

class PrefixCache {
 public:
  // hash_mask narrows the hash (tests force collisions with a tiny one).
  PrefixCache(int32_t num_blocks, int32_t block_size, uint64_t hash_mask);

  // The hash of a block of block_size tokens after a block of hash parent_hash (0: the first).
  uint64_t hash(uint64_t parent_hash, const int32_t* tokens) const;
  // The cached block with this hash that follows the content node `parent` (0: the sequence
  // start) and holds exactly `tokens`; -1 if none.
  int32_t find(uint64_t hash, int64_t parent, const int32_t* tokens) const;
  // Indexes block (not cached yet) as the content node after `parent`; returns its node id,
  // unique for the cache's life (a re-registered block gets a new one).
  int64_t insert(int32_t block, uint64_t hash, int64_t parent, const int32_t* tokens);
  // Drops block from the index (and from the evictable list).
  void remove(int32_t block);

  bool cached(int32_t block) const { return entries_[block].node != 0; }
  int64_t node(int32_t block) const { return entries_[block].node; }

  // Evictable blocks: cached and held by no sequence.
  void push_evictable(int32_t block);   // most recently used end
  void erase_evictable(int32_t block);  // a sequence takes it again
  int32_t pop_evictable();              // the least recently used one, dropped from the index
  int32_t num_evictable() const { return static_cast<int32_t>(lru_.size()); }
  int32_t num_cached() const { return static_cast<int32_t>(index_.size()); }

 private:
  struct Entry {
    uint64_t hash = 0;
    int64_t node = 0, parent = 0;  // node 0: not cached
    bool evictable = false;
    std::list<int32_t>::iterator lru;
  };
  const int32_t* tokens_of(int32_t block) const {
    return tokens_.data() + static_cast<size_t>(block) * block_size_;
  }

  int32_t block_size_;
  uint64_t hash_mask_;
  std::vector<Entry> entries_;                        // per block
  std::vector<int32_t> tokens_;                       // per block: its block_size token ids
  std::unordered_multimap<uint64_t, int32_t> index_;  // hash -> cached blocks
  std::list<int32_t> lru_;                            // evictable, least recently used first
  int64_t next_node_ = 1;
};

}  // namespace sllm::kv
