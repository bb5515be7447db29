// Paged KV storage: one K and one V tensor per layer, indexed by slot
// (block * block_size + offset), with the block bookkeeping of BlockManager.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

#include "kv/block_manager.h"

namespace sllm::kv {

struct KvCacheSpec {
  int64_t num_layers = 0, num_kv_heads = 0, head_dim = 0;
  int32_t num_blocks = 0, block_size = 16;
};

class KvCache {
 public:
  KvCache(const KvCacheSpec& spec, at::ScalarType dtype, at::Device device);

  BlockManager& manager() { return manager_; }
  const BlockManager& manager() const { return manager_; }
  const KvCacheSpec& spec() const { return spec_; }
  at::Tensor& k(int64_t layer) { return k_[layer]; }  // [slots, kv_heads, head_dim]
  at::Tensor& v(int64_t layer) { return v_[layer]; }
  const at::Tensor& k(int64_t layer) const { return k_[layer]; }
  const at::Tensor& v(int64_t layer) const { return v_[layer]; }
  // Executes copy-on-write block copies requested by BlockManager::append.
  void apply(const std::vector<CopyOp>& ops);
  // Bytes actually allocated for K and V over all layers.
  uint64_t allocated_bytes() const;

 private:
  KvCacheSpec spec_;
  BlockManager manager_;
  std::vector<at::Tensor> k_, v_;
};

}  // namespace sllm::kv
