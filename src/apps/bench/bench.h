// sllm bench (offline): the same prompts through several models, each in its own worker
// process, taking turns rep by rep. The pieces: settings and model specs (options.cpp), prompt
// sets (prompts.cpp), the worker and its JSON-lines protocol (worker.cpp, quality.cpp,
// sweep.cpp, child.cpp), statistics (stats.cpp), outputs (outputs.cpp) and the regression gate
// (gate.cpp); run.cpp drives them.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sllm::apps::bench {

// One --models entry: NAME=PATH[+ADAPTER].
struct ModelSpec {
  std::string name, spec, path, adapter;  // adapter: "" = none
};

// Splits "base=M,tuned=M+A" (and list elements) into specs; throws on bad syntax or a duplicate
// name, naming the entry.
std::vector<ModelSpec> parse_models(const nlohmann::json& models);

// A prompt of the set: text, or chat messages ([{role, content}]), and its token budget.
struct Prompt {
  std::string text;         // "" when messages are given
  nlohmann::json messages;  // null when text is given
  int64_t max_new_tokens = 0;
  std::string label;  // short, for reports: the start of the text or last message
};

// A JSONL file, or builtin:NAME (data/bench/NAME.jsonl, or builtin:office = the office test
// split). Errors name the file and line. default_max: for lines without max_new_tokens.
std::vector<Prompt> load_prompt_set(const std::string& spec, int64_t default_max);
// Where builtin:NAME is looked for; "" if not found.
std::string find_data_file(const std::string& relative);

struct Settings {
  std::string prompt_set;
  int64_t max_new_tokens = 128, reps = 3, warmup = 1, batch = 1, threads = 0;
  int64_t processes = 1;  // workers per model, one after another, sharing the reps
  bool ignore_eos = false;
  std::string dtype = "fp32", device = "cpu", chat_template = "auto";
  std::string task, ppl;  // "" = off
  int64_t task_limit = 0, task_max_new_tokens = 64, ppl_ctx = 512, kld_tokens = 512;
  int64_t pp = 0, tg = 0;
  std::vector<int64_t> sweep_batch;
  int64_t sweep_prompt_tokens = 64, sweep_gen_tokens = 32;
  std::string json, csv, markdown, html;
  std::string baseline;
  bool gate_quality = false, gate_speed = false;
  double tolerance = 0.10;  // fraction
};
Settings read_settings(const nlohmann::json& cfg);
// "10%" or "0.1" -> 0.1.
double parse_tolerance(const std::string& s);

// Summary statistics. Percentiles interpolate linearly between order statistics (numpy's
// default); std is the sample standard deviation (0 for fewer than 2 values).
struct Summary {
  double p50 = 0, p95 = 0, p99 = 0, mean = 0, std = 0;
  int64_t n = 0;
};
Summary summarize(std::vector<double> xs);
double percentile(std::vector<double> sorted, double q);
nlohmann::json to_json(const Summary& s);                // {p50, p95, p99, mean, std}
nlohmann::json mean_std(const std::vector<double>& xs);  // {mean, std}

// One request of one measured rep.
struct RequestRecord {
  int64_t prompt = 0, rep = 0;
  int64_t prompt_tokens = 0, output_tokens = 0;
  double e2e_ms = 0, ttft_ms = 0;
  std::optional<double> tpot_ms;  // (e2e - ttft) / (output_tokens - 1); none for 1 token
  std::vector<int32_t> tokens;
  std::string text;
};

// Everything measured for one model (filled as the run goes).
struct ModelRun {
  ModelSpec spec;
  std::optional<std::string> error;
  nlohmann::json info;  // the worker's load reply: load_s, weights_bytes, layers, ...
  uint64_t peak_rss = 0;
  uint64_t cuda_allocated = 0, cuda_reserved = 0;  // peaks on a CUDA device; 0 on the CPU
  std::vector<RequestRecord> requests;             // measured reps only
  int64_t reps_done = 0;
  nlohmann::json quality = {{"exact_match", nullptr}, {"ppl", nullptr}, {"kld", nullptr}};
  nlohmann::json pp_tg, sweep, sweep_summary;  // null when not run
};

// Per measured rep: the rep's prefill and decode tokens/s and its p50 latency.
struct RepFigures {
  double prefill_tok_s = 0, decode_tok_s = 0, latency_p50 = 0;
};
std::vector<RepFigures> rep_figures(const ModelRun& m);
// Prompts whose greedy output differs between reps: "prompt 3 (rep 0 vs rep 2)".
std::vector<std::string> output_mismatches(const ModelRun& m);

// The report: the JSON document every output is written from.
nlohmann::json report_json(const Settings& s, const std::vector<Prompt>& prompts,
                           const std::vector<ModelRun>& runs, const nlohmann::json& provenance,
                           bool complete);
nlohmann::json provenance();
std::string console_table(const nlohmann::json& report);
std::string csv_table(const nlohmann::json& report);
std::string markdown_report(const nlohmann::json& report);
// Writes --json/--csv/--markdown that are set (atomically).
void write_outputs(const Settings& s, const nlohmann::json& report);

// Regression gate: what regressed against the baseline report (empty = pass).
std::vector<std::string> gate(const nlohmann::json& baseline, const nlohmann::json& report,
                              bool quality, bool speed, double tolerance);

// The hidden worker mode (SLLM_BENCH_WORKER=1): reads requests from stdin, answers on stdout.
int worker_main();

}  // namespace sllm::apps::bench
