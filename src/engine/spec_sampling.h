// The sampler's distribution as data, and the acceptance rule of speculative decoding: a draft
// token d proposed with probability q(d) is kept with probability min(1, p(d) / q(d)); on
// rejection the token is drawn from norm(max(0, p - q)). The emitted token then follows p
// exactly, whatever q is (Leviathan et al. 2023, Chen et al. 2023).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "engine/sampler.h"

namespace sllm::engine {

struct TokenProb {
  int32_t token;
  double prob;
};
// Sorted by token id; the probabilities sum to 1.
using Distribution = std::vector<TokenProb>;

// The distribution Sampler::sample draws from for one row of logits (modified in place):
// repetition penalty over history, then temperature, top-k, top-p and min-p. Temperature 0
// gives the one-hot of the argmax (the first one on ties, as the sampler picks).
Distribution sampling_distribution(const SamplingParams& p, float* logits, int64_t vocab,
                                   const int32_t* history, size_t history_len);

double probability(const Distribution& d, int32_t token);
int32_t draw(const Distribution& d, std::mt19937_64& rng);

struct Verdict {
  bool accepted;
  int32_t token;  // the draft token if accepted, else the replacement drawn from the residual
};
// Verifies draft token `draft` against the target distribution p. q: the draft's distribution,
// or null when the draft proposed `draft` deterministically (n-gram lookup: q is one-hot).
Verdict verify_draft(const Distribution& p, const Distribution* q, int32_t draft,
                     std::mt19937_64& rng);

}  // namespace sllm::engine
