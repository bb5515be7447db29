// The load runner: concurrency levels, Poisson arrivals, per-request samples -> the per-level
// percentiles, throughput and goodput of the result JSON.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "apps/bench_load.h"
#include "apps/bench_load_client.h"
#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"

namespace sllm::apps {

using load::RequestResult;
using nlohmann::json;

namespace {

// Prompts of a few lengths, so prefill work varies between requests.
const std::vector<std::string>& builtin_prompts() {
  static const std::vector<std::string> p = {
      "What is the capital of France?",
      "Write a haiku about the sea.",
      "Explain in two sentences why the sky is blue.",
      "List five fruits that are red and say one thing about each of them.",
      "You are a helpful assistant. Summarize the following paragraph in one sentence: "
      "The committee met on Tuesday to review the budget for the coming year. After a long "
      "discussion about rising costs for energy and materials, the members agreed to postpone "
      "two building projects and to increase the maintenance fund by ten percent.",
      "Translate to German: The train leaves at seven and arrives before noon.",
      "Write a short story, about one hundred words long, about a robot that learns to paint.",
      "Give three tips for writing clear technical documentation."};
  return p;
}

std::vector<std::string> load_prompts(const std::string& set) {
  if (set.empty() || set == "builtin") return builtin_prompts();
  std::ifstream f(set);
  SLLM_CHECK(f.good(),
             "load.prompt_set: cannot read '{}': give builtin, a .txt file (one prompt a "
             "line) or a .jsonl file ({{\"prompt\": ...}} a line)",
             set);
  const bool jsonl = set.size() > 6 && set.substr(set.size() - 6) == ".jsonl";
  std::vector<std::string> out;
  std::string line;
  for (int n = 1; std::getline(f, line); ++n) {
    if (line.empty() || line == "\r") continue;
    if (!jsonl) {
      out.push_back(line);
      continue;
    }
    json j = json::parse(line, nullptr, false);
    SLLM_CHECK(
        !j.is_discarded() && j.is_object() && j.contains("prompt") && j["prompt"].is_string(),
        "{}:{}: expected a JSON object with a string \"prompt\"", set, n);
    out.push_back(j["prompt"].get<std::string>());
  }
  SLLM_CHECK(!out.empty(), "load.prompt_set: '{}' holds no prompts", set);
  return out;
}

// Linear interpolation between closest ranks (numpy's default).
double percentile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

json summary(std::vector<double> v) {
  if (v.empty())
    return {{"mean", nullptr}, {"median", nullptr}, {"p90", nullptr}, {"p99", nullptr}};
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  return {{"mean", sum / static_cast<double>(v.size())},
          {"median", percentile(v, 0.5)},
          {"p90", percentile(v, 0.9)},
          {"p99", percentile(v, 0.99)}};
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct Level {
  std::vector<RequestResult> results;
  int issued = 0;
  double wall_s = 0;
};

Level run_level(const LoadSettings& s, const load::Url& url, const load::RequestSpec& spec,
                const std::vector<std::string>& prompts, int conc, const LoadProgress& progress) {
  Level lv;
  std::mutex mu;
  std::mt19937_64 rng(s.seed * 1000003u + static_cast<uint64_t>(conc));
  std::exponential_distribution<double> gap(s.request_rate > 0 ? s.request_rate : 1.0);
  double next_arrival_s = 0;
  const int total = s.num_prompts;
  Timer clock;
  // Claims the next request: its index and when it may start (Poisson schedule).
  auto claim = [&](int& idx, double& at) {
    std::lock_guard lock(mu);
    if ((total > 0 && lv.issued >= total) || clock.seconds() >= s.duration_s) return false;
    at = 0;
    if (s.request_rate > 0) {
      at = next_arrival_s;
      if (at >= s.duration_s) return false;
      next_arrival_s += gap(rng);
    }
    idx = lv.issued++;
    return true;
  };
  auto worker = [&] {
    int idx = 0;
    double at = 0;
    while (claim(idx, at)) {
      if (const double wait = at - clock.seconds(); wait > 0)
        std::this_thread::sleep_for(std::chrono::duration<double>(wait));
      auto r = load::send_request(url, spec, prompts[static_cast<size_t>(idx) % prompts.size()]);
      std::lock_guard lock(mu);
      if (!r.ok && std::none_of(lv.results.begin(), lv.results.end(),
                                [&](const RequestResult& o) { return o.error == r.error; }))
        log::warn("{}: request failed ({}): {}", s.url, r.error, r.detail);
      lv.results.push_back(std::move(r));
      lv.wall_s = clock.seconds();
      if (progress) progress(conc, static_cast<int>(lv.results.size()), total);
    }
  };
  const int workers = total > 0 ? std::min(conc, total) : conc;
  std::vector<std::thread> pool;
  for (int i = 0; i < workers; ++i) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  return lv;
}

json level_json(const LoadSettings& s, int conc, const Level& lv) {
  std::vector<double> ttft, tpot, itl, e2e;
  std::map<std::string, int> errors;
  std::map<std::string, std::string> details;
  int completed = 0, good = 0, with_usage = 0;
  int64_t out_tokens = 0;
  for (const auto& r : lv.results) {
    if (!r.ok) {
      if (errors[r.error]++ == 0) details[r.error] = r.detail;
      continue;
    }
    ++completed;
    const int64_t n = r.output_tokens();
    out_tokens += n;
    with_usage += r.usage_tokens ? 1 : 0;
    e2e.push_back(r.e2e_ms);
    std::optional<double> first, per_token;
    if (s.stream && !r.token_ms.empty()) {
      first = r.token_ms.front();
      for (size_t i = 1; i < r.token_ms.size(); ++i)
        itl.push_back(r.token_ms[i] - r.token_ms[i - 1]);
      if (n > 1) per_token = (r.e2e_ms - *first) / static_cast<double>(n - 1);
    } else if (!s.stream && n > 0) {
      per_token = r.e2e_ms / static_cast<double>(n);  // no first-token time without a stream
    }
    if (first) ttft.push_back(*first);
    if (per_token) tpot.push_back(*per_token);
    const bool ok_ttft = !s.slo_ttft_ms || (first && *first <= *s.slo_ttft_ms);
    const bool ok_tpot = !s.slo_tpot_ms || !per_token || *per_token <= *s.slo_tpot_ms;
    good += ok_ttft && ok_tpot ? 1 : 0;
  }
  const double wall = lv.wall_s > 0 ? lv.wall_s : 1e-9;
  const char* tokens_from = completed == 0            ? "none"
                            : with_usage == completed ? "usage"
                            : with_usage > 0          ? "mixed"
                            : s.stream                ? "chunks"
                                                      : "none";
  json run = {{"concurrency", conc},
              {"request_rate", s.request_rate},
              {"num_requests", static_cast<int>(lv.results.size())},
              {"completed", completed},
              {"failed", static_cast<int>(lv.results.size()) - completed},
              {"errors", errors},
              {"error_details", details},
              {"duration_s", lv.wall_s},
              {"ttft_ms", summary(ttft)},
              {"tpot_ms", summary(tpot)},
              {"itl_ms", summary(itl)},
              {"e2e_ms", summary(e2e)},
              {"output_tokens", out_tokens},
              {"requests_per_s", completed / wall},
              {"output_tok_s", static_cast<double>(out_tokens) / wall},
              {"goodput_req_s", nullptr},
              {"tokens_from", tokens_from}};
  if (s.slo_ttft_ms || s.slo_tpot_ms) run["goodput_req_s"] = good / wall;
  return run;
}

json settings_json(const LoadSettings& s) {
  return {{"url", s.url},
          {"api", s.api},
          {"endpoint", s.endpoint},
          {"concurrency", s.concurrency},
          {"request_rate", s.request_rate},
          {"num_prompts", s.num_prompts},
          {"duration_s", s.duration_s},
          {"max_tokens", s.max_tokens},
          {"stream", s.stream},
          {"include_usage", s.include_usage},
          {"slo",
           {{"ttft_ms", s.slo_ttft_ms ? json(*s.slo_ttft_ms) : json()},
            {"tpot_ms", s.slo_tpot_ms ? json(*s.slo_tpot_ms) : json()}}},
          {"timeout_s", s.timeout_s},
          {"model", s.model},
          {"prompt_set", s.prompt_set},
          {"seed", s.seed}};
}

}  // namespace

json bench_load(const LoadSettings& s, const LoadProgress& progress) {
  const auto api = load::parse_api(s.api);
  const auto url = load::parse_url(s.url);
  SLLM_CHECK(!s.concurrency.empty(), "load.concurrency: give at least one level, e.g. 1,4,16");
  for (int c : s.concurrency)
    SLLM_CHECK(c >= 1 && c <= 4096, "load.concurrency: {} is not in 1..4096", c);
  SLLM_CHECK(s.num_prompts >= 0, "load.num_prompts: {} is negative", s.num_prompts);
  SLLM_CHECK(s.num_prompts > 0 || s.duration_s > 0,
             "load: give load.num_prompts or load.duration (both are 0: the run would not end)");
  SLLM_CHECK(s.max_tokens >= 1, "load.max_tokens: {} must be at least 1", s.max_tokens);
  SLLM_CHECK(s.timeout_s > 0, "load.timeout: {} must be positive", s.timeout_s);
  SLLM_CHECK(s.request_rate >= 0, "load.request_rate: {} is negative", s.request_rate);
  SLLM_CHECK(s.endpoint == "completions" || s.endpoint == "chat",
             "load.endpoint: '{}' is neither completions nor chat", s.endpoint);
  const auto prompts = load_prompts(s.prompt_set);

  json provenance = {{"tool", "sllm bench load"}, {"started_utc", utc_now()}};
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) provenance["host"] = host;
  const json models = load::wait_ready(url, s.url, s.ready_timeout_s);

  load::RequestSpec spec;
  spec.api = api;
  spec.chat = s.endpoint == "chat";
  spec.stream = s.stream;
  spec.include_usage = s.include_usage;
  spec.max_tokens = s.max_tokens;
  spec.timeout_s = s.timeout_s;
  spec.model = s.model;
  if (spec.model.empty()) {
    spec.model = "default";
    if (models.is_object() && models.contains("data") && models["data"].is_array() &&
        !models["data"].empty() && models["data"][0].is_object() &&
        models["data"][0].contains("id") && models["data"][0]["id"].is_string())
      spec.model = models["data"][0]["id"];
  }
  auto settings = settings_json(s);
  settings["model"] = spec.model;
  provenance["settings"] = settings;

  json result = {{"kind", "load"},       {"provenance", provenance}, {"url", s.url},
                 {"api", s.api},         {"model", spec.model},      {"stream", s.stream},
                 {"runs", json::array()}};
  Timer total;
  for (int conc : s.concurrency) {
    const auto lv = run_level(s, url, spec, prompts, conc, progress);
    result["runs"].push_back(level_json(s, conc, lv));
  }
  result["provenance"]["wall_s"] = total.seconds();
  return result;
}

}  // namespace sllm::apps
