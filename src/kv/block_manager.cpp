#include "kv/block_manager.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace sllm::kv {

BlockManager::BlockManager(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks), block_size_(block_size) {
  SLLM_CHECK(num_blocks >= 0, "KV cache needs a non-negative number of blocks, got {}", num_blocks);
  SLLM_CHECK(block_size > 0, "KV block size must be positive, got {}", block_size);
  refcount_.assign(static_cast<size_t>(num_blocks), 0);
  free_.reserve(static_cast<size_t>(num_blocks));
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);  // block 0 handed out first
}

int32_t BlockManager::blocks_needed(int64_t ntokens, int32_t block_size) {
  SLLM_CHECK(ntokens >= 0 && block_size > 0, "blocks_needed({}, {}): bad arguments", ntokens,
             block_size);
  const int64_t n = (ntokens + block_size - 1) / block_size;
  SLLM_CHECK(n <= std::numeric_limits<int32_t>::max(), "{} tokens need too many KV blocks",
             ntokens);
  return static_cast<int32_t>(n);
}

BlockManager::Seq& BlockManager::get(SeqId s) {
  auto it = seqs_.find(s);
  SLLM_CHECK(it != seqs_.end(), "unknown KV sequence id {}", s);
  return it->second;
}

const BlockManager::Seq& BlockManager::get(SeqId s) const {
  auto it = seqs_.find(s);
  SLLM_CHECK(it != seqs_.end(), "unknown KV sequence id {}", s);
  return it->second;
}

int32_t BlockManager::refcount(int32_t block) const {
  SLLM_CHECK(block >= 0 && block < num_blocks_, "KV block {} out of range [0, {})", block,
             num_blocks_);
  return refcount_[block];
}

SeqId BlockManager::add_sequence() {
  const SeqId id = next_id_++;
  seqs_.emplace(id, Seq{});
  return id;
}

int32_t BlockManager::blocks_for_append(const Seq& q, int32_t ntokens) const {
  SLLM_CHECK(ntokens >= 0, "cannot append {} tokens", ntokens);
  const int64_t new_len = int64_t{q.length} + ntokens;
  SLLM_CHECK(new_len <= std::numeric_limits<int32_t>::max(), "sequence too long: {} tokens",
             new_len);
  const int32_t grow = blocks_needed(new_len, block_size_) - static_cast<int32_t>(q.blocks.size());
  // Writing into a partly filled last block that another sequence also holds needs a copy.
  const bool cow = ntokens > 0 && q.length % block_size_ != 0 && refcount_[q.blocks.back()] > 1;
  return grow + (cow ? 1 : 0);
}

bool BlockManager::can_append(SeqId s, int32_t ntokens) const {
  return blocks_for_append(get(s), ntokens) <= num_free_blocks();
}

int32_t BlockManager::take_block() {
  // Never-used blocks first; then the least recently used cached one leaves the cache.
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else {
    SLLM_CHECK(cache_ && cache_->num_evictable() > 0, "no free KV block");
    b = cache_->pop_evictable();
  }
  refcount_[b] = 1;
  peak_used_ = std::max(peak_used_, num_blocks_ - num_free_blocks());
  return b;
}

void BlockManager::hold(int32_t block) {
  if (refcount_[block]++ == 0) {  // only a cached block is taken back from the free pool
    cache_->erase_evictable(block);
    peak_used_ = std::max(peak_used_, num_blocks_ - num_free_blocks());
  }
}

void BlockManager::release(int32_t block) {
  if (--refcount_[block] > 0) return;
  if (cache_ && cache_->cached(block))
    cache_->push_evictable(block);  // K/V kept until the pool needs the block
  else
    free_.push_back(block);
}

std::vector<CopyOp> BlockManager::append(SeqId s, int32_t ntokens) {
  Seq& q = get(s);
  const int32_t need = blocks_for_append(q, ntokens);
  // Check before touching anything, so a full cache leaves the state as it was.
  SLLM_CHECK(need <= num_free_blocks(), "KV cache is full: need {} blocks, {} free", need,
             num_free_blocks());
  std::vector<CopyOp> ops;
  if (ntokens == 0) return ops;
  const int32_t filled = q.length % block_size_;
  // A cached block truncated into is written in place only when nobody else holds it, and then
  // it leaves the cache (held by others too, it is copied below).
  if (filled != 0 && cache_ && refcount_[q.blocks.back()] == 1) cache_->remove(q.blocks.back());
  if (filled != 0 && refcount_[q.blocks.back()] > 1) {
    const int32_t src = q.blocks.back();
    const int32_t dst = take_block();
    release(src);  // still held by the other sequence(s): refcount > 0
    q.blocks.back() = dst;
    ops.push_back({src, dst, filled});
  }
  q.length += ntokens;
  used_tokens_ += ntokens;
  while (static_cast<int32_t>(q.blocks.size()) < blocks_needed(q.length, block_size_))
    q.blocks.push_back(take_block());
  return ops;
}

SeqId BlockManager::fork(SeqId parent) {
  Seq copy = get(parent);
  for (int32_t b : copy.blocks) hold(b);
  used_tokens_ += copy.length;
  const SeqId id = next_id_++;
  seqs_.emplace(id, std::move(copy));
  return id;
}

void BlockManager::free(SeqId s) {
  Seq& q = get(s);
  // Release the tail first so the LIFO pool hands the front blocks out first again.
  for (auto it = q.blocks.rbegin(); it != q.blocks.rend(); ++it) release(*it);
  used_tokens_ -= q.length;
  seqs_.erase(s);
}

void BlockManager::truncate(SeqId s, int32_t new_length) {
  Seq& q = get(s);
  SLLM_CHECK(new_length >= 0 && new_length <= q.length,
             "cannot truncate KV sequence {} of length {} to {}", s, q.length, new_length);
  const auto keep = static_cast<size_t>(blocks_needed(new_length, block_size_));
  while (q.blocks.size() > keep) {
    release(q.blocks.back());
    q.blocks.pop_back();
  }
  used_tokens_ -= q.length - new_length;
  q.length = new_length;
  // The blocks past the new end are no longer this sequence's cached prefix. A cached block it
  // now ends inside keeps its K/V (and stays cached) until an append would write into it.
  q.chain.resize(std::min(q.chain.size(), static_cast<size_t>(new_length / block_size_)));
}

void BlockManager::enable_prefix_caching(uint64_t hash_mask) {
  SLLM_CHECK(seqs_.empty() && num_free_blocks() == num_blocks_,
             "prefix caching must be turned on before the first sequence");
  cache_ = std::make_unique<PrefixCache>(num_blocks_, block_size_, hash_mask);
}

namespace {
// Where a salted chain starts: a root node id no real node has (they count up from 1) and a
// hash seed.
std::pair<uint64_t, int64_t> chain_root(int64_t salt) {
  if (salt == 0) return {0, 0};
  return {static_cast<uint64_t>(salt) * 0x9E3779B97F4A7C15ull, -salt};
}
}  // namespace

int32_t BlockManager::share_prefix(SeqId s, const int32_t* tokens, int32_t n, int64_t salt) {
  Seq& q = get(s);
  SLLM_CHECK(q.length == 0, "only an empty KV sequence can share a cached prefix");
  SLLM_CHECK(salt >= 0, "a prefix-cache salt is >= 0, got {}", salt);
  q.salt = salt;
  if (!cache_ || n <= 1) return 0;
  const int32_t full = (n - 1) / block_size_;  // the last token stays to compute
  auto [h, parent] = chain_root(salt);
  for (int32_t i = 0; i < full; ++i) {
    const int32_t* t = tokens + static_cast<ptrdiff_t>(i) * block_size_;
    h = cache_->hash(h, t);
    const int32_t b = cache_->find(h, parent, t);
    if (b < 0) break;
    hold(b);
    parent = cache_->node(b);
    q.blocks.push_back(b);
    q.chain.emplace_back(h, parent);
  }
  q.length = static_cast<int32_t>(q.blocks.size()) * block_size_;
  used_tokens_ += q.length;
  return q.length;
}

void BlockManager::cache_blocks(SeqId s, const int32_t* tokens, int32_t n) {
  if (!cache_) return;
  Seq& q = get(s);
  const auto full = static_cast<size_t>(std::min(n, q.length) / block_size_);
  for (size_t i = q.chain.size(); i < full; ++i) {
    const int32_t* t = tokens + i * static_cast<size_t>(block_size_);
    const auto [ph, parent] = i > 0 ? q.chain[i - 1] : chain_root(q.salt);
    const uint64_t h = cache_->hash(ph, t);
    const int32_t b = q.blocks[i];
    int64_t node;
    if (cache_->cached(b)) {  // shared with the sequence that cached it (a fork)
      node = cache_->node(b);
    } else if (const int32_t same = cache_->find(h, parent, t); same >= 0) {
      node = cache_->node(same);  // computed twice side by side: the first copy stays cached
    } else {
      node = cache_->insert(b, h, parent, t);
    }
    q.chain.emplace_back(h, node);
  }
}

int32_t BlockManager::length(SeqId s) const { return get(s).length; }

const std::vector<int32_t>& BlockManager::block_table(SeqId s) const { return get(s).blocks; }

int64_t BlockManager::slot(SeqId s, int32_t pos) const {
  const Seq& q = get(s);
  SLLM_CHECK(pos >= 0 && pos < q.length, "position {} outside KV sequence {} of length {}", pos, s,
             q.length);
  return int64_t{q.blocks[pos / block_size_]} * block_size_ + pos % block_size_;
}

void BlockManager::slots(SeqId s, int32_t start, int32_t n, int64_t* out) const {
  const Seq& q = get(s);
  SLLM_CHECK(start >= 0 && n >= 0 && int64_t{start} + n <= q.length,
             "positions [{}, {}) outside KV sequence {} of length {}", start, int64_t{start} + n, s,
             q.length);
  const int64_t bs = block_size_;
  for (int32_t i = 0; i < n; ++i) {
    const int32_t pos = start + i;
    out[i] = int64_t{q.blocks[pos / block_size_]} * bs + pos % block_size_;
  }
}

UsageStats BlockManager::stats() const {
  UsageStats st{};
  st.num_blocks = num_blocks_;
  st.block_size = block_size_;
  st.free_blocks = num_free_blocks();
  st.cached_blocks = cache_ ? cache_->num_evictable() : 0;
  st.used_blocks = num_blocks_ - st.free_blocks;
  st.used_tokens = used_tokens_;
  st.num_sequences = static_cast<int64_t>(seqs_.size());
  st.utilization = st.used_blocks > 0
                       ? static_cast<double>(used_tokens_) / (double(st.used_blocks) * block_size_)
                       : 0.0;
  st.peak_used_blocks = peak_used_;
  return st;
}

uint64_t kv_bytes(int64_t layers, int64_t kv_heads, int64_t head_dim, int64_t tokens,
                  int64_t bytes_per_elem) {
  SLLM_CHECK(layers >= 0 && kv_heads >= 0 && head_dim >= 0 && tokens >= 0 && bytes_per_elem >= 0,
             "kv_bytes: negative size");
  return uint64_t{2} * uint64_t(layers) * uint64_t(kv_heads) * uint64_t(head_dim) *
         uint64_t(tokens) * uint64_t(bytes_per_elem);
}

}  // namespace sllm::kv
