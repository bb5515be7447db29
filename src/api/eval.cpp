// perplexity / evaluate_task: the same protocols as `sllm eval --ppl` and `sllm eval --task`.
#include "sllm/eval.h"

#include <ATen/core/grad_mode.h>

#include "api/impl.h"
#include "apps/common.h"
#include "apps/perplexity.h"
#include "apps/task_eval.h"
#include "core/error.h"

namespace sllm {

PerplexityResult perplexity(const Model& model, const std::string& text, int64_t ctx,
                            const Model* reference) {
  SLLM_CHECK(ctx >= 2, "perplexity: ctx must be at least 2 tokens, got {}", ctx);
  const auto& m = model.impl().loaded;
  at::NoGradGuard no_grad;
  const auto ids = apps::ppl_tokens(*m.tokenizer, text, "the text");
  const auto r = apps::perplexity(*m.model, ids, ctx,
                                  reference ? reference->impl().loaded.model.get() : nullptr);
  PerplexityResult p;
  p.perplexity = r.perplexity;
  p.mean_nll = r.mean_nll;
  p.tokens = r.tokens;
  p.scored = r.scored;
  p.windows = r.windows;
  p.has_reference = r.has_ref;
  p.reference_perplexity = r.ref_perplexity;
  p.mean_kld = r.mean_kld;
  p.max_kld = r.max_kld;
  p.same_top = r.same_top;
  return p;
}

TaskEvalResult evaluate_task(const Model& model, const std::string& task_file,
                             const TaskEvalOptions& o) {
  SLLM_CHECK(o.limit >= 0 && o.max_new_tokens > 0 && o.max_seqs > 0,
             "TaskEvalOptions: limit must be >= 0, max_new_tokens and max_seqs > 0");
  const auto& m = model.impl().loaded;
  const auto items = eval::load_task_file(task_file, o.limit);
  apps::TaskEvalSettings s;
  s.prompt.chat_template = apps::use_chat_template(*m.tokenizer, o.chat_template);
  s.prompt.system = o.system;
  s.max_new_tokens = o.max_new_tokens;
  s.max_seqs = o.max_seqs;
  const auto run = apps::run_task_eval(m.model, m.tokenizer, items, s, "task eval");
  TaskEvalResult r;
  r.n = run.summary.n;
  r.exact = run.summary.exact;
  r.exact_match = run.summary.exact_match;
  r.field_match = run.summary.field_match;
  r.per_task = run.summary.per_task;
  r.settings = run.settings;
  for (const auto& x : run.results)
    r.items.push_back({std::to_string(x.item.line), x.item.task, x.item.prompt, x.item.expected,
                       x.got, x.score.exact, x.score.field_score, x.score.kind});
  return r;
}

}  // namespace sllm
