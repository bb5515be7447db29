#include "kv/kv_cache.h"

#include <ATen/ATen.h>

namespace sllm::kv {

KvCache::KvCache(const KvCacheSpec& spec, at::ScalarType dtype, at::Device device)
    : spec_(spec), manager_(spec.num_blocks, spec.block_size) {
  const int64_t slots = int64_t{spec.num_blocks} * spec.block_size;
  auto opts = at::TensorOptions().dtype(dtype).device(device);
  // Zeroed, not empty: padded attention reads may touch never-written slots, and garbage
  // NaNs there would leak through masked (zero-weight) products.
  for (int64_t l = 0; l < spec.num_layers; ++l) {
    k_.push_back(at::zeros({slots, spec.num_kv_heads, spec.head_dim}, opts));
    v_.push_back(at::zeros({slots, spec.num_kv_heads, spec.head_dim}, opts));
  }
}

void KvCache::apply(const std::vector<CopyOp>& ops) {
  const int64_t bs = spec_.block_size;
  for (const auto& op : ops) {
    for (size_t l = 0; l < k_.size(); ++l) {
      for (auto* t : {&k_[l], &v_[l]}) {
        t->narrow(0, op.dst_block * bs, op.ntokens)
            .copy_(t->narrow(0, op.src_block * bs, op.ntokens));
      }
    }
  }
}

uint64_t KvCache::allocated_bytes() const {
  uint64_t total = 0;
  for (size_t l = 0; l < k_.size(); ++l) total += k_[l].nbytes() + v_[l].nbytes();
  return total;
}

}  // namespace sllm::kv
