// Drafters of speculative decoding: they propose the next tokens of running sequences, which
// the engine then verifies with one forward of the target model. Prompt lookup (n-gram) needs
// no model; a draft model keeps its own paged KV cache, rolled back to what the target kept.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "engine/plan/batch_layout.h"
#include "engine/sampler.h"
#include "engine/spec_sampling.h"
#include "kv/kv_cache.h"
#include "model/llama.h"

namespace sllm::engine {

struct DraftRequest {
  int64_t id = 0;                                // the engine's request id
  const std::vector<int32_t>* tokens = nullptr;  // the sequence so far (all of it final)
  int64_t k = 0;                                 // tokens wanted
  const SamplingParams* params = nullptr;
  std::mt19937_64* rng = nullptr;  // the draft's own draws when sampling
  std::vector<int32_t> out;        // proposed tokens (up to k; none when nothing fits)
  std::vector<Distribution> q;     // the draft's distribution of each; empty: deterministic
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual void propose(std::vector<DraftRequest>& reqs) = 0;
  // The first `valid` tokens of request id are final: a draft cache keeps at most those.
  virtual void commit(int64_t /*id*/, int64_t /*valid*/) {}
  virtual void release(int64_t /*id*/) {}  // the request finished
  // A sequence may grow to this many tokens while drafting.
  virtual int64_t max_length() const { return std::numeric_limits<int64_t>::max(); }
};

// Prompt lookup: the tokens that followed the most recent earlier occurrence of the sequence's
// last n tokens (n from nmax down to nmin), at most k of them; empty when none occurs.
std::vector<int32_t> ngram_lookup(const std::vector<int32_t>& tokens, int64_t k, int64_t nmin,
                                  int64_t nmax);

std::unique_ptr<Drafter> make_ngram_drafter(int64_t nmin, int64_t nmax);
// target_vocab: the draft proposes only ids below it. kv_tokens, block_size: its cache pool.
std::unique_ptr<Drafter> make_model_drafter(std::shared_ptr<const model::LlamaModel> draft,
                                            int64_t target_vocab, int64_t kv_tokens,
                                            int32_t block_size);

// The forward of one engine step over cache: logits [M, vocab] fp32 on the CPU for
// x.logits_index.
at::Tensor forward_layout(const model::LlamaModel& m, kv::KvCache& cache, const LayoutIndices& x);

}  // namespace sllm::engine
