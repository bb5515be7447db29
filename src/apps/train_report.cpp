#include "apps/train_report.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "core/config.h"
#include "core/memory.h"
#include "core/svg_chart.h"
#include "io/atomic_write.h"

namespace fs = std::filesystem;

namespace sllm::apps {

void write_train_report(const std::string& run_dir, const ReportInputs& r) {
  const auto& res = r.result;
  ChartSeries train{"train loss", {}}, eval{"eval loss", {}};
  ChartSeries ce{"CE part", {}}, kd{"KD part", {}};  // distillation only
  for (const auto& p : res.log) {
    train.xy.emplace_back(static_cast<double>(p.step), p.loss);
    if (p.eval_loss >= 0) eval.xy.emplace_back(static_cast<double>(p.step), p.eval_loss);
    if (p.ce_loss >= 0) ce.xy.emplace_back(static_cast<double>(p.step), p.ce_loss);
    if (p.kd_loss >= 0) kd.xy.emplace_back(static_cast<double>(p.step), p.kd_loss);
  }
  std::vector<ChartSeries> series{train};
  if (!eval.xy.empty()) series.push_back(eval);
  if (!ce.xy.empty()) series.push_back(ce);
  if (!kd.xy.empty()) series.push_back(kd);
  io::write_file_atomic(
      (fs::path(run_dir) / "loss.svg").string(),
      svg_line_chart("Loss", "optimizer step",
                     ce.xy.empty() ? "loss (mean token CE)" : "loss (mean per labelled token)",
                     series));

  std::string md = fmt::format("# Training report: {}\n\n", fs::path(run_dir).filename().string());
  md += fmt::format("`sllm {}` — weights in `{}`\n\n", r.command, r.weights_dir);
  md += "| | |\n|---|---|\n";
  md += fmt::format("| model | `{}` |\n", r.config.value("model", ""));
  md += fmt::format("| parameters | {} |\n", r.trainable_summary);
  md += fmt::format("| optimizer steps | {} of {} |\n", res.steps, res.total_steps);
  md += fmt::format("| training time | {:.1f} s (optimizer steps only) |\n", res.train_seconds);
  md += fmt::format("| tokens | {} (non-pad input tokens, this run) |\n", res.train_tokens);
  md += fmt::format("| throughput | {:.1f} tokens/s |\n", res.tokens_per_s);
  md += fmt::format("| peak memory | {} (peak RSS of the process) |\n",
                    memory::format_bytes(res.peak_rss));
  if (!res.log.empty()) {
    md += fmt::format("| first / last logged loss | {:.4f} / {:.4f} |\n", res.log.front().loss,
                      res.log.back().loss);
  }
  if (!res.log.empty() && res.log.back().kd_loss >= 0)
    md += fmt::format("| last logged CE / KD parts | {:.4f} / {:.4f} |\n", res.log.back().ce_loss,
                      res.log.back().kd_loss);
  if (res.final_eval_loss >= 0)
    md += fmt::format("| final eval loss | {:.4f} |\n", res.final_eval_loss);
  md += fmt::format(
      "| data | {} examples, {} tokens ({} labelled), {} truncated, {} dropped without target, "
      "{} bad lines skipped |\n",
      r.data.examples, r.data.tokens, r.data.target_tokens, r.data.truncated,
      r.data.dropped_no_target, r.data.skipped_bad);
  md += "\n## Loss\n\n![loss curve](loss.svg)\n\n";
  if (r.before || r.after) {
    md += "## Task scores\n\n| model | exact match | field match | n |\n|---|---|---|---|\n";
    auto row = [&](const char* name, const TaskEvalRun& t) {
      md += fmt::format("| {} | {:.1f}% | {:.1f}% | {} |\n", name, t.summary.exact_match,
                        t.summary.field_match, t.summary.n);
    };
    if (r.before) row("base", *r.before);
    if (r.after) row("tuned", *r.after);
    if (r.before && r.after) {
      md += "\n| task | base | tuned |\n|---|---|---|\n";
      for (const auto& [task, ex_n] : r.after->summary.per_task) {
        const auto it = r.before->summary.per_task.find(task);
        const double b = it == r.before->summary.per_task.end() || it->second.second == 0
                             ? 0.0
                             : 100.0 * it->second.first / it->second.second;
        md += fmt::format("| {} | {:.1f}% | {:.1f}% |\n", task, b,
                          ex_n.second ? 100.0 * ex_n.first / ex_n.second : 0.0);
      }
    }
    md += fmt::format("\nGeneration: {}.\n", (r.after ? *r.after : *r.before).settings);
    md +=
        "\nFailures, grouped by kind: `task_eval_base.md`, `task_eval_tuned.md`; every answer: "
        "`task_eval_base.jsonl`, `task_eval_tuned.jsonl`.\n\n";
  }
  md += "## Configuration\n\n```\n";
  for (const auto& line : config::flatten(r.config)) md += line + "\n";
  md += "```\n";
  io::write_file_atomic((fs::path(run_dir) / "report.md").string(), md);

  nlohmann::json summary = {{"event", "summary"},
                            {"steps", res.steps},
                            {"train_tokens", res.train_tokens},
                            {"train_seconds", res.train_seconds},
                            {"train_tokens_per_s", res.tokens_per_s},
                            {"peak_rss_mb", static_cast<double>(res.peak_rss) / (1024.0 * 1024.0)}};
  if (r.before) summary["task_exact_match_base"] = r.before->summary.exact_match;
  if (r.after) summary["task_exact_match_tuned"] = r.after->summary.exact_match;
  if (r.before || r.after)
    summary["task_eval_settings"] = (r.after ? *r.after : *r.before).settings;
  std::ofstream((fs::path(run_dir) / "train_log.jsonl").string(), std::ios::app)
      << summary.dump() << "\n";
}

}  // namespace sllm::apps
