#include "engine/draft.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "engine/plan/scheduler.h"

namespace sllm::engine {

std::vector<int32_t> ngram_lookup(const std::vector<int32_t>& tokens, int64_t k, int64_t nmin,
                                  int64_t nmax) {
  const auto len = static_cast<int64_t>(tokens.size());
  for (int64_t n = std::min(nmax, len - 1); n >= std::max<int64_t>(nmin, 1); --n) {
    const auto suffix = tokens.end() - n;
    // The latest start i < len - n whose n tokens equal the suffix; tokens from i + n follow.
    for (int64_t i = len - n - 1; i >= 0; --i) {
      if (!std::equal(suffix, tokens.end(), tokens.begin() + i)) continue;
      const int64_t from = i + n, to = std::min(len, from + k);
      return {tokens.begin() + from, tokens.begin() + to};
    }
  }
  return {};
}

namespace {

class NgramDrafter final : public Drafter {
 public:
  NgramDrafter(int64_t nmin, int64_t nmax) : nmin_(nmin), nmax_(nmax) {}
  void propose(std::vector<DraftRequest>& reqs) override {
    for (auto& r : reqs) r.out = ngram_lookup(*r.tokens, r.k, nmin_, nmax_);
  }

 private:
  int64_t nmin_, nmax_;
};

// A small model of the same vocabulary drafting k tokens with k batched forwards: the first
// catches its cache up with the sequence (the whole prompt at first, then the one or two
// tokens the target added), the others run one token each.
class ModelDrafter final : public Drafter {
 public:
  ModelDrafter(std::shared_ptr<const model::LlamaModel> m, int64_t target_vocab, int64_t kv_tokens,
               int32_t block_size)
      : model_(std::move(m)), vocab_(std::min<int64_t>(target_vocab, model_->config().vocab_size)) {
    const auto& c = model_->config();
    kv::KvCacheSpec spec{c.num_layers, c.num_kv_heads, c.head_dim,
                         kv::BlockManager::blocks_needed(kv_tokens, block_size), block_size};
    cache_ = std::make_unique<kv::KvCache>(spec, model_->dtype(), model_->device());
  }

  int64_t max_length() const override { return model_->config().max_position; }

  void propose(std::vector<DraftRequest>& reqs) override {
    auto& mgr = cache_->manager();
    std::vector<SeqState*> seqs;
    int64_t rounds = 0;
    for (auto& r : reqs) {
      SeqState& s = state(r.id);
      s.tokens = *r.tokens;
      seqs.push_back(&s);
      rounds = std::max(rounds, r.k);
    }
    for (int64_t round = 0; round < rounds; ++round) {
      std::vector<Chunk> chunks;
      std::vector<size_t> who;
      for (size_t i = 0; i < reqs.size(); ++i) {
        if (round >= reqs[i].k) continue;
        SeqState& s = *seqs[i];
        if (!mgr.can_append(s.kv_id, static_cast<int32_t>(s.pending()))) {
          reqs[i].k = round;  // the draft's pool is full: propose what is drafted so far
          continue;
        }
        chunks.push_back({&s, s.computed, s.pending()});
        mgr.append(s.kv_id, static_cast<int32_t>(s.pending()));
        who.push_back(i);
      }
      if (chunks.empty()) break;
      const LayoutIndices x = build_layout(chunks, mgr);
      const at::Tensor logits = forward_layout(*model_, *cache_, x);
      const int64_t row_len = logits.size(1);
      for (size_t j = 0; j < who.size(); ++j) {
        DraftRequest& r = reqs[who[j]];
        SeqState& s = *seqs[who[j]];
        s.computed = s.length();
        float* l = logits.data_ptr<float>() + static_cast<int64_t>(j) * row_len;
        Distribution q =
            sampling_distribution(*r.params, l, vocab_, s.tokens.data(), s.tokens.size());
        const int32_t tok = q.size() == 1 ? q[0].token : draw(q, *r.rng);
        r.out.push_back(tok);
        r.q.push_back(std::move(q));
        s.tokens.push_back(tok);
      }
    }
  }

  void commit(int64_t id, int64_t valid) override {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) return;
    SeqState& s = it->second;
    s.computed = std::min(s.computed, valid);
    cache_->manager().truncate(s.kv_id, static_cast<int32_t>(s.computed));
  }

  void release(int64_t id) override {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) return;
    cache_->manager().free(it->second.kv_id);
    seqs_.erase(it);
  }

 private:
  SeqState& state(int64_t id) {
    auto [it, fresh] = seqs_.try_emplace(id);
    if (fresh) {
      it->second.id = id;
      it->second.kv_id = cache_->manager().add_sequence();
    }
    return it->second;
  }

  std::shared_ptr<const model::LlamaModel> model_;
  int64_t vocab_;
  std::unique_ptr<kv::KvCache> cache_;
  std::map<int64_t, SeqState> seqs_;
};

}  // namespace

std::unique_ptr<Drafter> make_ngram_drafter(int64_t nmin, int64_t nmax) {
  SLLM_CHECK(nmin >= 1 && nmax >= nmin,
             "n-gram drafting needs 1 <= ngram_min <= ngram_max, got {} and {}", nmin, nmax);
  return std::make_unique<NgramDrafter>(nmin, nmax);
}

std::unique_ptr<Drafter> make_model_drafter(std::shared_ptr<const model::LlamaModel> draft,
                                            int64_t target_vocab, int64_t kv_tokens,
                                            int32_t block_size) {
  return std::make_unique<ModelDrafter>(std::move(draft), target_vocab, kv_tokens, block_size);
}

}  // namespace sllm::engine
