// sllm eval --ppl: perplexity over non-overlapping windows; sllm eval --task: task accuracy.
// Protocol (docs/eval.md): tokenize the whole file once (BOS first when the model adds
// one), cut into consecutive windows of `ctx` tokens (a last window of >= 2 tokens is
// kept), score every token of a window but its first from the tokens before it in the
// same window; perplexity = exp(total NLL / scored tokens).
#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>
#include <optional>

#include "apps/apps.h"
#include "apps/common.h"
#include "apps/perplexity.h"
#include "apps/task_eval.h"
#include "core/config.h"
#include "core/error.h"
#include "io/atomic_write.h"

namespace fs = std::filesystem;

namespace sllm::apps {

options::Table eval_options() {
  return options::join(
      {model_group().table(),
       quant_group(false).table(),
       {{"ppl", nullptr, "text file to score (perplexity)", "--ppl"},
        {"ctx", 512, "window length in tokens (perplexity)", "--ctx"},
        {"kld_ref", nullptr,
         "reference model (e.g. the unquantized one): mean KL divergence and same-top-token % on "
         "the --ppl text",
         "--kld-ref"},
        {"task", nullptr, "JSONL task file: prompt/completion or messages (accuracy)", "--task"},
        {"report", nullptr, "where the failure report goes (default <task>.eval.md)", "--report"},
        {"predictions", nullptr, "also write every answer here (JSONL, one object per item)",
         "--predictions"},
        {"limit", 0, "score only the first N items", "--limit"},
        {"max_new_tokens", TaskEvalSettings{}.max_new_tokens, "answer length limit",
         "-n,--max-new-tokens"},
        {"chat_template", "auto", "auto | true | false, as in training", "--chat-template"},
        {"json", false, "JSON output", "--json"},
        {"max_seqs", TaskEvalSettings{}.max_seqs, "task answers decoded together"},
        {"system", "",
         "system prompt of chat-wrapped task prompts (\"\": the template's default)"}}});
}

namespace {

int run_task(const nlohmann::json& cfg) {
  const auto path = cfg["task"].get<std::string>();
  const auto items = eval::load_task_file(path, config::get<int64_t>(cfg, "limit"));
  auto m = load_from_config(cfg);
  TaskEvalSettings ts;
  ts.prompt.chat_template = use_chat_template(*m.tokenizer, cfg["chat_template"]);
  ts.prompt.system = config::get<std::string>(cfg, "system");
  ts.max_new_tokens = config::get<int64_t>(cfg, "max_new_tokens");
  ts.max_seqs = config::get<int64_t>(cfg, "max_seqs");
  auto r = run_task_eval(m.model, m.tokenizer, items, ts, "task eval");
  if (cfg["predictions"].is_string()) write_predictions(cfg["predictions"].get<std::string>(), r);
  const std::string report = cfg["report"].is_string()
                                 ? cfg["report"].get<std::string>()
                                 : fs::path(path).stem().string() + ".eval.md";
  io::write_file_atomic(
      report, render_task_report(
                  "Task evaluation: " + m.display_name +
                      (cfg["adapter"].is_string() ? " + " + cfg["adapter"].get<std::string>() : ""),
                  r));
  const auto& s = r.summary;
  if (config::get<bool>(cfg, "json")) {
    nlohmann::json j = {{"model", m.path},
                        {"adapter", cfg["adapter"]},
                        {"file", path},
                        {"n", s.n},
                        {"exact", s.exact},
                        {"exact_match", s.exact_match},
                        {"field_match", s.field_match},
                        {"failure_kinds", s.failure_kinds},
                        {"report", report},
                        {"settings", r.settings},
                        {"seconds", r.seconds}};
    for (const auto& [task, en] : s.per_task)
      j["per_task"][task] = {{"exact", en.first}, {"n", en.second}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << fmt::format(
        "exact match {:.1f}% ({}/{}), field match {:.1f}%  ({:.1f} s)\n  ({})\n", s.exact_match,
        s.exact, s.n, s.field_match, r.seconds, r.settings);
    for (const auto& [task, en] : s.per_task)
      std::cout << fmt::format("  {:<20} {:5.1f}% ({}/{})\n", task,
                               en.second ? 100.0 * en.first / en.second : 0.0, en.first, en.second);
    std::cout << "failures (expected vs. got, worst first): " << report << "\n";
  }
  return 0;
}

}  // namespace

int run_eval(const nlohmann::json& cfg) {
  SLLM_CHECK(cfg["ppl"].is_string() || cfg["task"].is_string(),
             "give a text file with --ppl FILE or a task file with --task FILE.jsonl");
  SLLM_CHECK(!(cfg["ppl"].is_string() && cfg["task"].is_string()),
             "--ppl and --task are separate runs; give one of them");
  if (cfg["task"].is_string()) return run_task(cfg);
  SLLM_CHECK(!cfg["kld_ref"].is_string() || cfg["ppl"].is_string(),
             "--kld-ref compares next-token distributions on a text: give --ppl FILE too");
  const auto ctx = config::get<int64_t>(cfg, "ctx");
  const std::string path = cfg["ppl"].get<std::string>();
  const std::string text = io::read_file(path);
  auto m = load_from_config(cfg);
  const auto ids = ppl_tokens(*m.tokenizer, text, path);
  std::optional<load::LoadedModel> ref;
  if (cfg["kld_ref"].is_string()) {
    auto rc = cfg;
    rc["model"] = cfg["kld_ref"];
    rc["adapter"] = nullptr;
    rc.erase("quant");  // the reference as stored, whatever quant.type the model is loaded with
    ref = load_from_config(rc);
    SLLM_CHECK(ref->tokenizer->encode(text, false) == m.tokenizer->encode(text, false),
               "--kld-ref {}: its tokenizer splits the text differently from the model's; KL "
               "divergence needs the same tokenizer",
               cfg["kld_ref"].get<std::string>());
  }
  auto r = perplexity(*m.model, ids, ctx, ref ? ref->model.get() : nullptr);
  nlohmann::json j = {{"model", m.path},
                      {"file", path},
                      {"ctx", ctx},
                      {"windows", r.windows},
                      {"tokens", r.tokens},
                      {"scored_tokens", r.scored},
                      {"mean_nll", r.mean_nll},
                      {"perplexity", r.perplexity},
                      {"seconds", r.seconds}};
  if (ref) {
    j["kld_ref"] = ref->path;
    j["ref_perplexity"] = r.ref_perplexity;
    j["mean_kld"] = r.mean_kld;
    j["max_kld"] = r.max_kld;
    j["same_top_token_pct"] = r.same_top;
  }
  if (config::get<bool>(cfg, "json")) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << fmt::format(
        "perplexity {:.4f}  (mean NLL {:.5f} over {} tokens, {} windows of {}, {:.1f} s)\n",
        r.perplexity, r.mean_nll, r.scored, r.windows, ctx, r.seconds);
    if (ref)
      std::cout << fmt::format(
          "vs {}: reference perplexity {:.4f}, mean KL divergence {:.5f} (max {:.4f}), same "
          "top token {:.2f}%\n",
          ref->path, r.ref_perplexity, r.mean_kld, r.max_kld, r.same_top);
  }
  return 0;
}

}  // namespace sllm::apps
