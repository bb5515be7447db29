// sllm bench (offline): load every model in its own worker, run the prompt set rep by rep in
// turns (round robin, so drift of the machine hits every model alike), then the quality and
// speed extras; write the report after every step so an interrupted or failing run keeps what it
// measured.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

#include "apps/apps.h"
#include "apps/bench/bench.h"
#include "apps/bench/child.h"
#include "apps/bench_load.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "eval/task_scoring.h"
#include "io/atomic_write.h"

namespace fs = std::filesystem;

namespace sllm::apps {

using nlohmann::json;
using namespace bench;

namespace {

json load_request(const Settings& s, const ModelSpec& m, const std::vector<Prompt>& prompts) {
  json ps = json::array();
  for (const auto& p : prompts)
    ps.push_back({{"text", p.text},
                  {"messages", p.messages},
                  {"max_new_tokens", p.max_new_tokens},
                  {"label", p.label}});
  return {{"op", "load"},
          {"name", m.name},
          {"model", m.path},
          {"adapter", m.adapter.empty() ? json(nullptr) : json(m.adapter)},
          {"dtype", s.dtype},
          {"device", s.device},
          {"threads", s.threads},
          {"chat_template", s.chat_template},
          {"ignore_eos", s.ignore_eos},
          {"batch", s.batch},
          {"prompts", ps}};
}

void add_requests(ModelRun& run, const json& reply, int64_t rep) {
  int64_t i = 0;
  for (const auto& r : reply["requests"]) {
    RequestRecord rec;
    rec.prompt = i++;
    rec.rep = rep;
    rec.prompt_tokens = r["prompt_tokens"].get<int64_t>();
    rec.output_tokens = r["output_tokens"].get<int64_t>();
    rec.e2e_ms = r["e2e_ms"].get<double>();
    rec.ttft_ms = r["ttft_ms"].get<double>();
    if (rec.output_tokens > 1)
      rec.tpot_ms = (rec.e2e_ms - rec.ttft_ms) / static_cast<double>(rec.output_tokens - 1);
    rec.tokens = r["tokens"].get<std::vector<int32_t>>();
    rec.text = r["text"].get<std::string>();
    run.requests.push_back(std::move(rec));
  }
}

// Where the problem is: the model's name and its spec.
std::string who(const ModelSpec& m) { return fmt::format("model '{}' ({})", m.name, m.spec); }

}  // namespace

int run_bench(const json& cfg) {
  if (const char* w = std::getenv("SLLM_BENCH_WORKER"); w && std::string(w) == "1")
    return worker_main();
  if (cfg["load"]["url"].is_string()) {
    // Load mode: --prompt-set names the load prompts; builtin:NAME means the built-in set.
    json load_cfg = cfg;
    if (const auto& ps = cfg["prompt_set"]; ps.is_string())
      load_cfg["load"]["prompt_set"] =
          ps.get<std::string>().rfind("builtin", 0) == 0 ? "builtin" : ps.get<std::string>();
    return run_bench_load(load_cfg);
  }
  const Settings s = read_settings(cfg);
  const auto specs = parse_models(cfg["models"]);
  const auto prompts = load_prompt_set(s.prompt_set, s.max_new_tokens);
  json baseline;
  if (!s.baseline.empty()) {
    try {
      baseline = json::parse(io::read_file(s.baseline));
    } catch (const json::exception& e) {
      SLLM_FAIL("--baseline {}: not a JSON report ({})", s.baseline, e.what());
    }
  }
  if (!s.task.empty()) eval::load_task_file(s.task, s.task_limit);  // bad lines fail here, once
  if (!s.ppl.empty()) io::read_file(s.ppl);

  install_signal_handlers();
  const json prov = provenance();
  std::vector<ModelRun> runs(specs.size());
  std::vector<std::unique_ptr<Child>> kids(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) runs[i].spec = specs[i];
  const int64_t n = static_cast<int64_t>(specs.size());
  const int64_t per_model = s.processes * (1 + s.warmup) + s.reps + !s.task.empty() +
                            !s.ppl.empty() + (s.pp > 0 || s.tg > 0) + !s.sweep_batch.empty();
  ProgressBar bar("bench", n * per_model);
  int64_t done = 0;
  auto emit = [&](bool complete) {
    write_outputs(s, report_json(s, prompts, runs, prov, complete));
  };
  // One request to model i; a failure marks the model and ends its worker, the others go on.
  auto call = [&](size_t i, const json& req) -> std::optional<json> {
    auto& run = runs[i];
    if (run.error || !kids[i]) return std::nullopt;
    try {
      auto r = kids[i]->call(req);
      if (r.contains("peak_rss_bytes"))
        run.peak_rss = std::max<uint64_t>(run.peak_rss, r["peak_rss_bytes"]);
      if (r.contains("cuda_allocated_bytes")) {
        run.cuda_allocated = std::max<uint64_t>(run.cuda_allocated, r["cuda_allocated_bytes"]);
        run.cuda_reserved = std::max<uint64_t>(run.cuda_reserved, r["cuda_reserved_bytes"]);
      }
      return r;
    } catch (const Interrupted&) {
      throw;
    } catch (const std::exception& e) {
      run.error = fmt::format("{}: {}", req["op"].get<std::string>(), e.what());
      log::warn("{} failed: {}", who(run.spec), *run.error);
      kids[i]->kill();
      return std::nullopt;
    }
  };
  const fs::path tmp = fs::temp_directory_path() / fmt::format("sllm-bench-{}", getpid());
  bool was_interrupted = false;
  try {
    for (size_t i = 0; i < specs.size(); ++i, bar.update(++done)) {
      const auto& m = specs[i];
      std::error_code ec;
      if (!fs::exists(m.path, ec)) {
        runs[i].error = fmt::format(
            "{} does not exist (a GGUF file or a Hugging Face model "
            "directory is expected)",
            m.path);
      } else if (!m.adapter.empty() && !fs::is_directory(m.adapter, ec)) {
        runs[i].error = fmt::format("adapter directory {} does not exist", m.adapter);
      }
      if (runs[i].error) {
        log::warn("{}: {}", who(m), *runs[i].error);
        continue;
      }
      kids[i] = std::make_unique<Child>(m.name);
      if (auto r = call(i, load_request(s, m, prompts))) runs[i].info = *r;
    }
    // The reps in s.processes groups; every group after the first starts each model's worker
    // anew (load, warm-up), models still taking turns rep by rep.
    for (int64_t g = 0, measured = 0; g < s.processes; ++g) {
      const int64_t group_reps = s.reps / s.processes + (g < s.reps % s.processes);
      for (size_t i = 0; g > 0 && i < specs.size(); ++i, bar.update(++done)) {
        if (runs[i].error || !kids[i]) continue;
        call(i, {{"op", "quit"}});
        kids[i].reset();  // reaped before the next one loads: no two copies in memory
        kids[i] = std::make_unique<Child>(specs[i].name);
        call(i, load_request(s, specs[i], prompts));
      }
      for (int64_t rep = 0; rep < s.warmup + group_reps; ++rep) {
        for (size_t i = 0; i < specs.size(); ++i, bar.update(++done)) {
          const auto r = call(i, {{"op", "run"}});
          if (!r || rep < s.warmup) continue;
          add_requests(runs[i], *r, measured + rep - s.warmup);
          runs[i].reps_done++;
          emit(false);  // each finished model/rep is in the files at once
        }
      }
      measured += group_reps;
    }
    if (!s.task.empty())
      for (size_t i = 0; i < specs.size(); ++i, bar.update(++done))
        if (auto r = call(i, {{"op", "task"},
                              {"file", s.task},
                              {"limit", s.task_limit},
                              {"max_new_tokens", s.task_max_new_tokens},
                              {"chat_template", s.chat_template}}))
          runs[i].quality["exact_match"] = (*r)["exact_match"];
    if (!s.ppl.empty()) {
      fs::create_directories(tmp);
      const std::string ref = (tmp / "reference.logp").string();
      for (size_t i = 0; i < specs.size(); ++i, bar.update(++done)) {
        json req = {
            {"op", "ppl"}, {"file", s.ppl}, {"ctx", s.ppl_ctx}, {"kld_tokens", s.kld_tokens}};
        if (specs.size() > 1) {
          if (i == 0)
            req["kld_out"] = ref;
          else if (!runs[0].error)
            req["kld_in"] = ref;
        }
        if (auto r = call(i, req)) {
          runs[i].quality["ppl"] = (*r)["ppl"];
          runs[i].quality["kld"] = i == 0 ? json(0.0) : r->value("kld", json());
          if (r->contains("same_top_pct")) runs[i].quality["same_top_pct"] = (*r)["same_top_pct"];
          if (r->contains("kld_note")) runs[i].quality["kld_note"] = (*r)["kld_note"];
        }
      }
      fs::remove_all(tmp);
    }
    if (s.pp > 0 || s.tg > 0)
      for (size_t i = 0; i < specs.size(); ++i, bar.update(++done))
        if (auto r = call(i, {{"op", "pp_tg"},
                              {"pp", std::max<int64_t>(s.pp, 1)},
                              {"tg", std::max<int64_t>(s.tg, 1)},
                              {"reps", s.reps},
                              {"warmup", s.warmup}}))
          runs[i].pp_tg = {{"pp", s.pp},
                           {"tg", s.tg},
                           {"pp_tok_s", (*r)["pp_tok_s"]},
                           {"tg_tok_s", (*r)["tg_tok_s"]}};
    if (!s.sweep_batch.empty())
      for (size_t i = 0; i < specs.size(); ++i, bar.update(++done))
        if (auto r = call(i, {{"op", "sweep"},
                              {"batches", s.sweep_batch},
                              {"prompt_tokens", s.sweep_prompt_tokens},
                              {"gen_tokens", s.sweep_gen_tokens}})) {
          runs[i].sweep = (*r)["sweep"];
          runs[i].sweep_summary = (*r)["sweep_summary"];
        }
    for (size_t i = 0; i < specs.size(); ++i)
      if (kids[i] && kids[i]->alive()) call(i, {{"op", "quit"}});
  } catch (const Interrupted&) {
    was_interrupted = true;
  }
  for (auto& k : kids)
    if (k) k->kill();
  std::error_code ec;
  fs::remove_all(tmp, ec);
  bar.finish();
  const json report = report_json(s, prompts, runs, prov, !was_interrupted);
  write_outputs(s, report);
  std::cout << console_table(report) << std::flush;
  SLLM_CHECK(!was_interrupted, "interrupted (Ctrl-C): the reps finished so far are in the report{}",
             s.json.empty() ? " (pass --json FILE to keep it)" : " " + s.json);
  std::vector<std::string> failed;
  for (const auto& r : runs)
    if (r.error) failed.push_back(who(r.spec) + ": " + *r.error);
  if (!baseline.is_null() && (s.gate_quality || s.gate_speed)) {
    const auto regressions = gate(baseline, report, s.gate_quality, s.gate_speed, s.tolerance);
    for (const auto& g : regressions) std::cerr << "regression: " << g << "\n";
    SLLM_CHECK(regressions.empty() || !failed.empty(),
               "{} regression(s) against the baseline {} (listed above)", regressions.size(),
               s.baseline);
    if (regressions.empty()) log::info("no regression against {}", s.baseline);
  }
  SLLM_CHECK(failed.empty(), "{} of {} models failed (the others' results are kept): {}",
             failed.size(), specs.size(), fmt::join(failed, "; "));
  return 0;
}

}  // namespace sllm::apps
