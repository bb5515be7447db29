// `sllm bench` server load mode: drives an OpenAI-compatible or TGI server at several
// concurrency levels and reports latency percentiles (TTFT, TPOT, inter-token, end-to-end),
// throughput and goodput per level. docs/bench_load.md describes each metric.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/options.h"

namespace sllm::apps {

struct LoadSettings {
  std::string url = "http://127.0.0.1:8080";
  std::string api = "openai";            // openai | tgi
  std::string endpoint = "completions";  // openai: completions | chat
  std::vector<int> concurrency{1, 4, 16, 64};
  double request_rate = 0;  // requests/s, Poisson arrivals; 0 = as fast as the workers go
  int num_prompts = 64;     // requests per level; 0 = until `duration_s`
  double duration_s = 120;  // per level: no new request after this
  int max_tokens = 64;
  bool stream = true;
  bool include_usage = true;
  std::optional<double> slo_ttft_ms, slo_tpot_ms;
  double timeout_s = 60;               // per request
  double ready_timeout_s = 30;         // readiness probe
  std::string model;                   // "" = the first of GET /v1/models, else "default"
  std::string prompt_set = "builtin";  // builtin | FILE.txt (a prompt a line) | FILE.jsonl
  uint64_t seed = 0;                   // Poisson arrivals and prompt order
};

// The `load.*` options (keys, defaults, help, flags) and the settings they give.
options::Table bench_load_options();
// Output options read by run_bench_load: json, csv, markdown (bool flags), out (result JSON file),
// html (report file). The bench command may declare them itself with the same keys.
options::Table bench_output_options();
LoadSettings load_settings_from_config(const nlohmann::json& cfg);

// "ttft=500,tpot=50" -> the two limits in ms (either may be left out).
void parse_slo(const std::string& text, LoadSettings& s);
// [1, "4,16", "64"] or "1,4,16,64" -> {1, 4, 16, 64}; sllm::Error names `key` on bad input.
std::vector<int> parse_int_list(const nlohmann::json& v, const std::string& key);

// Runs every concurrency level and returns the result JSON ({"kind": "load", ...}; schema in
// docs/bench_load.md). Throws sllm::Error when the server is not ready; failed requests are
// counted per reason in each run and leave the other measurements in place.
// progress(level, done, total) is called after each request (total 0 = unknown).
using LoadProgress = std::function<void(int concurrency, int done, int total)>;
nlohmann::json bench_load(const LoadSettings& s, const LoadProgress& progress = {});

// Text renderings of a load result.
std::string load_table(const nlohmann::json& result);     // console
std::string load_markdown(const nlohmann::json& result);  // GitHub table
std::string load_csv(const nlohmann::json& result);       // a row per level

// The recipe: bench_load with a progress bar, the table (or --json/--csv/--markdown), the
// result and HTML files when asked. Exit 1 when any request failed (partial results are still
// printed and written), with one error line per failure reason naming the URL.
int run_bench_load(const nlohmann::json& cfg);

}  // namespace sllm::apps
