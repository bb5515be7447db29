#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "core/error.h"
#include "engine/nucleus.h"

namespace sllm::engine {

void SamplingParams::validate() const {
  SLLM_CHECK(temperature >= 0, "temperature must be >= 0, got {}", temperature);
  SLLM_CHECK(top_k >= 0, "top_k must be >= 0, got {}", top_k);
  SLLM_CHECK(top_p > 0 && top_p <= 1, "top_p must be in (0, 1], got {}", top_p);
  SLLM_CHECK(min_p >= 0 && min_p < 1, "min_p must be in [0, 1), got {}", min_p);
  SLLM_CHECK(repetition_penalty > 0, "repetition_penalty must be > 0, got {}", repetition_penalty);
  SLLM_CHECK(presence_penalty >= -2 && presence_penalty <= 2,
             "presence_penalty must be in [-2, 2], got {}", presence_penalty);
  SLLM_CHECK(frequency_penalty >= -2 && frequency_penalty <= 2,
             "frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  SLLM_CHECK(max_new_tokens > 0, "max_new_tokens must be > 0, got {}", max_new_tokens);
}

int32_t Sampler::sample(float* logits, int64_t vocab, const std::vector<int32_t>& history) {
  if (p_.repetition_penalty != 1.0) {
    std::unordered_set<int32_t> seen(history.begin(), history.end());
    const float rp = static_cast<float>(p_.repetition_penalty);
    for (int32_t t : seen) {
      if (t < 0 || t >= vocab) continue;
      logits[t] = logits[t] < 0 ? logits[t] * rp : logits[t] / rp;
    }
  }
  if (prompt_len_ < 0) prompt_len_ = static_cast<int64_t>(history.size());
  if (p_.presence_penalty != 0.0 || p_.frequency_penalty != 0.0) {
    std::unordered_map<int32_t, int64_t> count;
    for (size_t i = static_cast<size_t>(prompt_len_); i < history.size(); ++i) ++count[history[i]];
    for (const auto& [t, c] : count) {
      if (t < 0 || t >= vocab) continue;
      logits[t] -=
          static_cast<float>(p_.frequency_penalty * static_cast<double>(c) + p_.presence_penalty);
    }
  }
  if (p_.temperature == 0.0)
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);

  const float inv_t = static_cast<float>(1.0 / p_.temperature);
  // Tokens more than 30 nats below the best carry < 1e-13 of the mass each: dropping
  // them before sorting keeps the distribution and avoids sorting the whole vocabulary.
  const float best = *std::max_element(logits, logits + vocab) * inv_t;
  cand_.clear();
  for (int64_t i = 0; i < vocab; ++i) {
    const float l = logits[i] * inv_t;
    if (l >= best - 30.0f) cand_.emplace_back(l, static_cast<int32_t>(i));
  }
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first; };
  size_t n = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
    n = static_cast<size_t>(p_.top_k);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  // softmax over the kept candidates (sorted descending)
  const float mx = cand_[0].first;
  double total = 0;
  std::vector<double> prob(n);
  for (size_t i = 0; i < n; ++i)
    total += prob[i] = std::exp(static_cast<double>(cand_[i].first - mx));
  for (auto& p : prob) p /= total;
  const size_t keep = nucleus_size(prob, p_.top_p, p_.min_p);
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += prob[i];
  std::uniform_real_distribution<double> u(0.0, mass);
  double r = u(rng_), acc = 0;
  for (size_t i = 0; i < keep; ++i) {
    acc += prob[i];
    if (r < acc) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace sllm::engine
