#include "kv/prefix_cache.h"

#include <algorithm>

#include "core/error.h"

namespace sllm::kv {

namespace {
// splitmix64's finalizer: every input bit reaches every output bit.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

PrefixCache::PrefixCache(int32_t num_blocks, int32_t block_size, uint64_t hash_mask)
    : block_size_(block_size),
      hash_mask_(hash_mask),
      entries_(static_cast<size_t>(num_blocks)),
      tokens_(static_cast<size_t>(num_blocks) * static_cast<size_t>(block_size)) {}

uint64_t PrefixCache::hash(uint64_t parent_hash, const int32_t* tokens) const {
  uint64_t h = mix(parent_hash + 0x9e3779b97f4a7c15ull);
  for (int32_t i = 0; i < block_size_; ++i)
    h = mix(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(tokens[i])) + 0x9e3779b97f4a7c15ull));
  return h & hash_mask_;
}

int32_t PrefixCache::find(uint64_t hash, int64_t parent, const int32_t* tokens) const {
  auto [lo, hi] = index_.equal_range(hash);
  for (auto it = lo; it != hi; ++it) {
    const int32_t b = it->second;
    if (entries_[b].parent == parent && std::equal(tokens, tokens + block_size_, tokens_of(b)))
      return b;
  }
  return -1;
}

int64_t PrefixCache::insert(int32_t block, uint64_t hash, int64_t parent, const int32_t* tokens) {
  Entry& e = entries_[block];
  SLLM_CHECK(e.node == 0, "KV block {} is already in the prefix cache", block);
  e.hash = hash;
  e.parent = parent;
  e.node = next_node_++;
  std::copy(tokens, tokens + block_size_,
            tokens_.begin() + static_cast<ptrdiff_t>(block) * block_size_);
  index_.emplace(hash, block);
  return e.node;
}

void PrefixCache::remove(int32_t block) {
  Entry& e = entries_[block];
  if (e.node == 0) return;
  if (e.evictable) erase_evictable(block);
  auto [lo, hi] = index_.equal_range(e.hash);
  for (auto it = lo; it != hi; ++it)
    if (it->second == block) {
      index_.erase(it);
      break;
    }
  // Blocks cached after this one keep its node id as their parent; ids are never reused, so
  // they simply stop matching and age out of the evictable list.
  e.node = 0;
}

void PrefixCache::push_evictable(int32_t block) {
  Entry& e = entries_[block];
  SLLM_CHECK(e.node != 0 && !e.evictable, "KV block {} cannot become evictable", block);
  e.lru = lru_.insert(lru_.end(), block);
  e.evictable = true;
}

void PrefixCache::erase_evictable(int32_t block) {
  Entry& e = entries_[block];
  SLLM_CHECK(e.evictable, "KV block {} is not evictable", block);
  lru_.erase(e.lru);
  e.evictable = false;
}

int32_t PrefixCache::pop_evictable() {
  SLLM_CHECK(!lru_.empty(), "no evictable KV block");
  const int32_t b = lru_.front();
  remove(b);
  return b;
}

}  // namespace sllm::kv
