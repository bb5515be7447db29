// Summary statistics of the measured requests.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "apps/bench/bench.h"

namespace sllm::apps::bench {

using nlohmann::json;

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

Summary summarize(std::vector<double> xs) {
  Summary s;
  s.n = static_cast<int64_t>(xs.size());
  if (xs.empty()) return s;
  s.p50 = percentile(xs, 50);
  s.p95 = percentile(xs, 95);
  s.p99 = percentile(xs, 99);
  s.mean = std::accumulate(xs.begin(), xs.end(), 0.0) / static_cast<double>(xs.size());
  if (xs.size() > 1) {
    double ss = 0;
    for (double x : xs) ss += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(ss / static_cast<double>(xs.size() - 1));
  }
  return s;
}

json to_json(const Summary& s) {
  if (s.n == 0)
    return {
        {"p50", nullptr}, {"p95", nullptr}, {"p99", nullptr}, {"mean", nullptr}, {"std", nullptr}};
  return {{"p50", s.p50}, {"p95", s.p95}, {"p99", s.p99}, {"mean", s.mean}, {"std", s.std}};
}

json mean_std(const std::vector<double>& xs) {
  if (xs.empty()) return {{"mean", nullptr}, {"std", nullptr}};
  const auto s = summarize(xs);
  return {{"mean", s.mean}, {"std", s.std}};
}

std::vector<RepFigures> rep_figures(const ModelRun& m) {
  std::map<int64_t, std::vector<const RequestRecord*>> by_rep;
  for (const auto& r : m.requests) by_rep[r.rep].push_back(&r);
  std::vector<RepFigures> out;
  for (const auto& [rep, rs] : by_rep) {
    double ptok = 0, ttft = 0, dtok = 0, dms = 0;
    std::vector<double> e2e;
    for (const auto* r : rs) {
      ptok += static_cast<double>(r->prompt_tokens);
      ttft += r->ttft_ms;
      if (r->output_tokens > 1) {
        dtok += static_cast<double>(r->output_tokens - 1);
        dms += r->e2e_ms - r->ttft_ms;
      }
      e2e.push_back(r->e2e_ms);
    }
    RepFigures f;
    f.prefill_tok_s = ttft > 0 ? ptok / (ttft / 1e3) : 0;
    f.decode_tok_s = dms > 0 ? dtok / (dms / 1e3) : 0;
    f.latency_p50 = percentile(e2e, 50);
    out.push_back(f);
  }
  return out;
}

std::vector<std::string> output_mismatches(const ModelRun& m) {
  std::map<int64_t, const RequestRecord*> first;
  std::vector<std::string> out;
  for (const auto& r : m.requests) {
    auto [it, fresh] = first.emplace(r.prompt, &r);
    if (!fresh && it->second->tokens != r.tokens)
      out.push_back(
          fmt::format("prompt {} (rep {} vs rep {})", r.prompt + 1, it->second->rep, r.rep));
  }
  return out;
}

}  // namespace sllm::apps::bench
