#include "engine/spec_sampling.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

#include "core/error.h"
#include "engine/nucleus.h"

namespace sllm::engine {

namespace {

bool by_token(const TokenProb& a, const TokenProb& b) { return a.token < b.token; }

}  // namespace

Distribution sampling_distribution(const SamplingParams& p, float* logits, int64_t vocab,
                                   const int32_t* history, size_t history_len) {
  SLLM_CHECK(vocab > 0, "sampling needs a non-empty vocabulary");
  if (p.repetition_penalty != 1.0) {
    const std::unordered_set<int32_t> seen(history, history + history_len);
    const float rp = static_cast<float>(p.repetition_penalty);
    for (int32_t t : seen)
      if (t >= 0 && t < vocab) logits[t] = logits[t] < 0 ? logits[t] * rp : logits[t] / rp;
  }
  const auto best = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  if (p.temperature == 0.0) return {{best, 1.0}};

  // Scaled logits within 30 nats of the best (the rest carries < 1e-13 each), best first.
  const double inv_t = 1.0 / p.temperature;
  const float top = logits[best] * static_cast<float>(inv_t);
  std::vector<std::pair<float, int32_t>> c;
  for (int64_t i = 0; i < vocab; ++i) {
    const float l = logits[i] * static_cast<float>(inv_t);
    if (l >= top - 30.0f) c.emplace_back(l, static_cast<int32_t>(i));
  }
  auto desc = [](const auto& a, const auto& b) { return a.first > b.first; };
  size_t n = c.size();
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < n) n = static_cast<size_t>(p.top_k);
  std::partial_sort(c.begin(), c.begin() + static_cast<std::ptrdiff_t>(n), c.end(), desc);
  std::vector<double> probs(n);
  double z = 0;
  for (size_t i = 0; i < n; ++i) z += probs[i] = std::exp(static_cast<double>(c[i].first - top));
  for (auto& q : probs) q /= z;
  const size_t keep = nucleus_size(probs, p.top_p, p.min_p);
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += probs[i];
  Distribution d(keep);
  for (size_t i = 0; i < keep; ++i) d[i] = {c[i].second, probs[i] / mass};
  std::sort(d.begin(), d.end(), by_token);
  return d;
}

double probability(const Distribution& d, int32_t token) {
  auto it = std::lower_bound(d.begin(), d.end(), TokenProb{token, 0}, by_token);
  return it != d.end() && it->token == token ? it->prob : 0.0;
}

namespace {
// Draws from weights w (not normalized, total > 0) over d's tokens.
int32_t draw_weighted(const Distribution& d, const std::vector<double>& w, double total,
                      std::mt19937_64& rng) {
  const double r = std::uniform_real_distribution<double>(0.0, total)(rng);
  double acc = 0;
  for (size_t i = 0; i < d.size(); ++i)
    if (w[i] > 0 && r < (acc += w[i])) return d[i].token;
  for (size_t i = d.size(); i-- > 0;)  // rounding: the last token with weight
    if (w[i] > 0) return d[i].token;
  SLLM_FAIL("cannot draw from an empty distribution");
}
}  // namespace

int32_t draw(const Distribution& d, std::mt19937_64& rng) {
  SLLM_CHECK(!d.empty(), "cannot draw from an empty distribution");
  if (d.size() == 1) return d[0].token;
  std::vector<double> w(d.size());
  double total = 0;
  for (size_t i = 0; i < d.size(); ++i) total += w[i] = d[i].prob;
  return draw_weighted(d, w, total, rng);
}

Verdict verify_draft(const Distribution& p, const Distribution* q, int32_t draft,
                     std::mt19937_64& rng) {
  const double pd = probability(p, draft), qd = q ? probability(*q, draft) : 1.0;
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (qd > 0 && u * qd < pd) return {true, draft};
  // Rejected: draw from max(0, p - q), which is p without the draft token when q is one-hot.
  std::vector<double> w(p.size());
  double total = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double qi = q ? probability(*q, p[i].token) : (p[i].token == draft ? 1.0 : 0.0);
    total += w[i] = std::max(0.0, p[i].prob - qi);
  }
  if (total <= 0) return {false, draw(p, rng)};  // p == q up to rounding
  return {false, draw_weighted(p, w, total, rng)};
}

}  // namespace sllm::engine
