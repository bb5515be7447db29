#include "serve/metrics.h"

#include <fmt/format.h>

#include "core/error.h"

namespace sllm::serve {

namespace {
const std::vector<double> kSeconds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                      2.5,   5,    10,    30,   60,  120,  300};
const std::vector<double> kBatch = {1, 2, 4, 8, 16, 32, 64, 128, 256};

std::string series(const std::string& name, const std::string& labels) {
  return labels.empty() ? name : name + "{" + labels + "}";
}
}  // namespace

Metrics::Metrics() {
  declare("sllm_requests_total", "counter", "HTTP requests by route and status");
  declare("sllm_request_duration_seconds", "histogram", "time from arrival to the last byte",
          kSeconds);
  declare("sllm_request_queue_seconds", "histogram",
          "time a generation request waited before the engine took it", kSeconds);
  declare("sllm_time_to_first_token_seconds", "histogram", "arrival to the first generated token",
          kSeconds);
  declare("sllm_inter_token_latency_seconds", "histogram", "time between two generated tokens",
          kSeconds);
  declare("sllm_prompt_tokens_total", "counter", "prompt tokens of admitted requests");
  declare("sllm_generation_tokens_total", "counter", "generated tokens");
  declare("sllm_batch_size", "histogram", "sequences running in one engine step", kBatch);
  declare("sllm_requests_running", "gauge", "sequences admitted by the engine");
  declare("sllm_requests_waiting", "gauge", "sequences queued for the engine");
  declare("sllm_kv_cache_usage_percent", "gauge", "KV cache blocks in use, percent of the pool");
  declare("sllm_rejections_total", "counter", "requests refused, by reason");
  declare("sllm_spec_draft_tokens_total", "counter",
          "speculative decoding: draft tokens proposed (0 without a draft)");
  declare("sllm_spec_accepted_tokens_total", "counter",
          "speculative decoding: draft tokens the target accepted");
  declare("sllm_preemptions_total", "counter",
          "sequences sent back to the queue, to be computed again, when the KV cache was full");
  declare("sllm_prefix_cache_queries_total", "counter",
          "tokens looked up in the prefix cache at admission (a preempted sequence's again)");
  declare("sllm_prefix_cache_hits_total", "counter",
          "of those, tokens found in the prefix cache (their K/V shared, not computed)");
  declare("sllm_prefix_cache_hit_rate", "gauge",
          "prefix cache hits / queries since the start, in tokens (0 with caching off)");
  for (const char* c : {"sllm_preemptions_total", "sllm_prefix_cache_queries_total",
                        "sllm_prefix_cache_hits_total"})
    inc(c, "", 0);
  set("sllm_prefix_cache_hit_rate", 0);
  set("sllm_requests_running", 0);
  set("sllm_requests_waiting", 0);
  set("sllm_kv_cache_usage_percent", 0);
}

void Metrics::declare(const std::string& name, const std::string& type, const std::string& help,
                      std::vector<double> bounds) {
  families_[name] = {type, help, std::move(bounds)};
}

void Metrics::inc(const std::string& name, const std::string& labels, double by) {
  std::lock_guard lk(mu_);
  SLLM_CHECK(families_.count(name), "unknown metric {}", name);
  values_[name][labels] += by;
}

void Metrics::set(const std::string& name, double value) {
  std::lock_guard lk(mu_);
  SLLM_CHECK(families_.count(name), "unknown metric {}", name);
  values_[name][""] = value;
}

void Metrics::observe(const std::string& name, double value, const std::string& labels) {
  std::lock_guard lk(mu_);
  auto f = families_.find(name);
  SLLM_CHECK(f != families_.end() && f->second.type == "histogram", "unknown histogram {}", name);
  Hist& h = hists_[name][labels];
  if (h.counts.empty()) h.counts.assign(f->second.bounds.size(), 0);
  for (size_t i = 0; i < f->second.bounds.size(); ++i)
    if (value <= f->second.bounds[i]) h.counts[i]++;
  h.count++;
  h.sum += value;
}

double Metrics::counter(const std::string& name, const std::string& labels) const {
  std::lock_guard lk(mu_);
  auto it = values_.find(name);
  if (it == values_.end()) return 0;
  auto v = it->second.find(labels);
  return v == it->second.end() ? 0 : v->second;
}

double Metrics::gauge(const std::string& name) const { return counter(name, ""); }

std::string Metrics::render() const {
  std::lock_guard lk(mu_);
  std::string out;
  for (const auto& [name, fam] : families_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, fam.help, name, fam.type);
    if (fam.type == "histogram") {
      auto hs = hists_.find(name);
      if (hs == hists_.end()) continue;
      for (const auto& [labels, h] : hs->second) {
        const std::string sep = labels.empty() ? "" : labels + ",";
        for (size_t i = 0; i < fam.bounds.size(); ++i)
          out +=
              fmt::format("{}_bucket{{{}le=\"{}\"}} {}\n", name, sep, fam.bounds[i], h.counts[i]);
        out += fmt::format("{}_bucket{{{}le=\"+Inf\"}} {}\n", name, sep, h.count);
        out += fmt::format("{} {}\n", series(name + "_sum", labels), h.sum);
        out += fmt::format("{} {}\n", series(name + "_count", labels), h.count);
      }
    } else if (auto vs = values_.find(name); vs != values_.end()) {
      for (const auto& [labels, v] : vs->second)
        out += fmt::format("{} {}\n", series(name, labels), v);
    }
  }
  return out;
}

}  // namespace sllm::serve
