// Sampler chain applied to one row of logits: repetition penalty -> presence/frequency
// penalties -> temperature -> top-k -> top-p -> min-p -> draw. Temperature 0 is greedy (argmax).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace sllm::engine {

// The most alternatives a request may ask log-probabilities for (Request::logprobs).
inline constexpr int32_t kMaxTopLogprobs = 20;

struct SamplingParams {
  double temperature = 0.7;
  int64_t top_k = 0;                // 0: off
  double top_p = 1.0;               // 1: off
  double min_p = 0.0;               // 0: off
  double repetition_penalty = 1.0;  // 1: off (transformers' definition)
  // OpenAI's penalties over the generated tokens (as vLLM): logit -= frequency * count +
  // presence * (count > 0). 0: off; both in [-2, 2].
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  uint64_t seed = 42;
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool ignore_eos = false;

  void validate() const;  // clear error on out-of-range values
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) {}
  // logits: vocab floats (modified in place); history: tokens seen so far (for the
  // penalties). The history of the first call is the prompt: later tokens are generated ones.
  int32_t sample(float* logits, int64_t vocab, const std::vector<int32_t>& history);

 private:
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
  int64_t prompt_len_ = -1;  // history size at the first call
};

}  // namespace sllm::engine
