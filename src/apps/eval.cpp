// sllm eval --ppl: perplexity over non-overlapping windows; sllm eval --task: task accuracy.
// Protocol (docs/eval.md): tokenize the whole file once (BOS first when the model adds
// one), cut into consecutive windows of `ctx` tokens (a last window of >= 2 tokens is
// kept), score every token of a window but its first from the tokens before it in the
// same window; perplexity = exp(total NLL / scored tokens).
#include <ATen/ATen.h>

#include <filesystem>
#include <iostream>

#include "apps/apps.h"
#include "apps/common.h"
#include "apps/task_eval.h"
#include "core/config.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/timer.h"
#include "io/atomic_write.h"

namespace fs = std::filesystem;

namespace sllm::apps {

nlohmann::json eval_defaults() {
  return merged(model_defaults(), {{"ppl", nullptr},
                                   {"ctx", 512},
                                   {"json", false},
                                   {"task", nullptr},
                                   {"report", nullptr},
                                   {"limit", 0},
                                   {"max_new_tokens", 128},
                                   {"max_seqs", 16},
                                   {"chat_template", "auto"},
                                   {"system", ""}});
}

namespace {

int run_task(const nlohmann::json& cfg) {
  const auto path = cfg["task"].get<std::string>();
  const auto items = eval::load_task_file(path, config::get<int64_t>(cfg, "limit"));
  auto m = load_from_config(cfg);
  data::DatasetOptions prompt;
  prompt.chat_template = use_chat_template(*m.tokenizer, cfg["chat_template"]);
  prompt.system = config::get<std::string>(cfg, "system");
  at::NoGradGuard no_grad;
  auto r = run_task_eval(m.model, m.tokenizer, items, prompt,
                         config::get<int64_t>(cfg, "max_new_tokens"),
                         config::get<int64_t>(cfg, "max_seqs"), "task eval");
  const std::string report = cfg["report"].is_string()
                                 ? cfg["report"].get<std::string>()
                                 : fs::path(path).stem().string() + ".eval.md";
  io::write_file_atomic(
      report, eval::render_report(
                  "Task evaluation: " + m.display_name +
                      (cfg["adapter"].is_string() ? " + " + cfg["adapter"].get<std::string>() : ""),
                  r.summary, r.results));
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
                        {"seconds", r.seconds}};
    for (const auto& [task, en] : s.per_task)
      j["per_task"][task] = {{"exact", en.first}, {"n", en.second}};
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << fmt::format("exact match {:.1f}% ({}/{}), field match {:.1f}%  ({:.1f} s)\n",
                             s.exact_match, s.exact, s.n, s.field_match, r.seconds);
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
  const auto ctx = config::get<int64_t>(cfg, "ctx");
  SLLM_CHECK(ctx >= 2, "ctx must be at least 2, got {}", ctx);
  const std::string path = cfg["ppl"].get<std::string>();
  const std::string text = io::read_file(path);
  auto m = load_from_config(cfg);
  SLLM_CHECK(ctx <= m.model->config().max_position, "ctx {} exceeds the model's context {}", ctx,
             m.model->config().max_position);
  std::vector<int32_t> ids;
  if (m.tokenizer->add_bos && m.tokenizer->bos_id >= 0) ids.push_back(m.tokenizer->bos_id);
  auto body = m.tokenizer->encode(text, /*parse_special=*/false);
  ids.insert(ids.end(), body.begin(), body.end());
  SLLM_CHECK(ids.size() >= 2, "{}: needs at least 2 tokens of text, has {}", path, ids.size());
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t windows = (n + ctx - 1) / ctx - ((n % ctx) == 1 ? 1 : 0);
  double nll = 0;
  int64_t scored = 0;
  Timer t;
  ProgressBar bar("perplexity", windows);
  at::NoGradGuard no_grad;
  for (int64_t w = 0; w < windows; ++w) {
    const int64_t start = w * ctx, len = std::min(ctx, n - start);
    auto win =
        at::tensor(std::vector<int64_t>(ids.begin() + start, ids.begin() + start + len), at::kLong)
            .unsqueeze(0)
            .to(m.model->device());
    auto logits = m.model->forward_full(win)[0];
    auto loss = at::cross_entropy_loss(logits.narrow(0, 0, len - 1), win[0].narrow(0, 1, len - 1),
                                       {}, at::Reduction::Sum);
    nll += loss.item<double>();
    scored += len - 1;
    bar.update(w + 1);
  }
  bar.finish();
  const double ppl = std::exp(nll / scored);
  nlohmann::json j = {{"model", m.path},          {"file", path},      {"ctx", ctx},
                      {"windows", windows},       {"tokens", n},       {"scored_tokens", scored},
                      {"mean_nll", nll / scored}, {"perplexity", ppl}, {"seconds", t.seconds()}};
  if (config::get<bool>(cfg, "json")) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << fmt::format(
        "perplexity {:.4f}  (mean NLL {:.5f} over {} tokens, {} windows of {}, {:.1f} s)\n", ppl,
        nll / scored, scored, windows, ctx, t.seconds());
  }
  return 0;
}

}  // namespace sllm::apps
