// The report document (the JSON every output is rendered from) and its provenance.
#include <sys/utsname.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <torch/version.h>
#include "apps/bench/bench.h"

namespace sllm::apps::bench {

using nlohmann::json;

namespace {

std::string first_line_of(const std::string& cmd) {
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[256];
    if (fgets(buf, sizeof buf, p)) out = buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

json machine() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, cpu;
  std::set<std::string> flags;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    const auto val = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "model name" && cpu.empty()) cpu = val;
    if (key == "flags" && flags.empty()) {
      std::istringstream ss(val);
      for (std::string f; ss >> f;) flags.insert(f);
    }
  }
  json isa = json::array();
  for (const char* f : {"avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                        "avx512_bf16", "amx_tile", "neon", "asimd"})
    if (flags.count(f)) isa.push_back(f);
  utsname u{};
  uname(&u);
  return {{"cpu", cpu.empty() ? std::string(u.machine) : cpu},
          {"cores", std::thread::hardware_concurrency()},
          {"isa", isa},
          {"os", std::string(u.sysname) + " " + u.release}};
}

}  // namespace

json provenance() {
  std::string cmd;
  {
    std::ifstream in("/proc/self/cmdline", std::ios::binary);
    std::string arg;
    while (std::getline(in, arg, '\0')) cmd += (cmd.empty() ? "" : " ") + arg;
  }
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  const auto src = exe.parent_path().parent_path();
  const std::string commit =
      first_line_of("git -C '" + src.string() + "' rev-parse HEAD 2>/dev/null");
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"command", cmd},
          {"commit", commit.empty() ? json(nullptr) : json(commit)},
          {"date", date},
          {"machine", machine()},
          {"versions",
           {{"sllm", first_line_of("'" + exe.string() + "' --version 2>/dev/null")},
            {"libtorch", TORCH_VERSION}}}};
}

namespace {

json model_entry(const ModelRun& m, const std::vector<RepFigures>& first,
                 const std::vector<Prompt>& prompts) {
  const auto figs = rep_figures(m);
  std::vector<double> e2e, ttft, tpot, pre, dec, r_dec, r_lat;
  json reqs = json::array();
  for (const auto& r : m.requests) {
    e2e.push_back(r.e2e_ms);
    ttft.push_back(r.ttft_ms);
    if (r.tpot_ms) tpot.push_back(*r.tpot_ms);
    reqs.push_back({{"prompt", prompts.at(static_cast<size_t>(r.prompt)).label},
                    {"prompt_index", r.prompt},
                    {"rep", r.rep},
                    {"e2e_ms", r.e2e_ms},
                    {"ttft_ms", r.ttft_ms},
                    {"tpot_ms", r.tpot_ms ? json(*r.tpot_ms) : json(nullptr)},
                    {"prompt_tokens", r.prompt_tokens},
                    {"output_tokens", r.output_tokens},
                    {"output_text", r.text},
                    {"output_ids", r.tokens}});
  }
  for (size_t i = 0; i < figs.size(); ++i) {
    pre.push_back(figs[i].prefill_tok_s);
    dec.push_back(figs[i].decode_tok_s);
    if (i < first.size() && first[i].decode_tok_s > 0 && first[i].latency_p50 > 0) {
      r_dec.push_back(figs[i].decode_tok_s / first[i].decode_tok_s);
      r_lat.push_back(figs[i].latency_p50 / first[i].latency_p50);
    }
  }
  const auto mism = output_mismatches(m);
  auto info = [&](const char* k) { return m.info.contains(k) ? m.info[k] : json(nullptr); };
  return {{"name", m.spec.name},
          {"spec", m.spec.spec},
          {"load_s", info("load_s")},
          {"weights_bytes", info("weights_bytes")},
          {"lm_head", info("lm_head")},
          {"peak_rss_bytes", m.peak_rss ? json(m.peak_rss) : json(nullptr)},
          {"cuda_allocated_bytes", m.cuda_allocated ? json(m.cuda_allocated) : json(nullptr)},
          {"cuda_reserved_bytes", m.cuda_reserved ? json(m.cuda_reserved) : json(nullptr)},
          {"error", m.error ? json(*m.error) : json(nullptr)},
          {"reps_done", m.reps_done},
          {"latency_ms", to_json(summarize(e2e))},
          {"ttft_ms", to_json(summarize(ttft))},
          {"tpot_ms", to_json(summarize(tpot))},
          {"prefill_tok_s", mean_std(pre)},
          {"decode_tok_s", mean_std(dec)},
          {"ratio_vs_first", {{"decode_tok_s", mean_std(r_dec)}, {"latency_p50", mean_std(r_lat)}}},
          {"outputs_identical_across_reps", mism.empty()},
          {"output_mismatches", mism},
          {"requests", reqs},
          {"quality", m.quality},
          {"pp_tg", m.pp_tg},
          {"sweep", m.sweep.is_null() ? json::array() : m.sweep},
          {"sweep_summary", m.sweep_summary},
          {"model_info", m.info}};
}

}  // namespace

json report_json(const Settings& s, const std::vector<Prompt>& prompts,
                 const std::vector<ModelRun>& runs, const json& prov, bool complete) {
  json settings = {{"prompt_set", s.prompt_set},
                   {"prompts", prompts.size()},
                   {"max_new_tokens", s.max_new_tokens},
                   {"ignore_eos", s.ignore_eos},
                   {"reps", s.reps},
                   {"warmup", s.warmup},
                   {"processes", s.processes},
                   {"batch", s.batch},
                   {"threads", s.threads},
                   {"dtype", s.dtype},
                   {"device", s.device},
                   {"chat_template", s.chat_template},
                   {"task", s.task.empty() ? json(nullptr) : json(s.task)},
                   {"ppl", s.ppl.empty() ? json(nullptr) : json(s.ppl)},
                   {"ppl_ctx", s.ppl_ctx},
                   {"kld_tokens", s.kld_tokens},
                   {"pp", s.pp},
                   {"tg", s.tg},
                   {"sweep_batch", s.sweep_batch}};
  json models = json::array();
  const auto first = runs.empty() ? std::vector<RepFigures>{} : rep_figures(runs[0]);
  for (const auto& m : runs) models.push_back(model_entry(m, first, prompts));
  return {{"kind", "offline"},
          {"complete", complete},
          {"provenance", prov},
          {"settings", settings},
          {"models", models}};
}

}  // namespace sllm::apps::bench
