#include "apps/task_eval.h"

#include "core/log.h"
#include "core/progress.h"
#include "core/timer.h"
#include "engine/engine.h"
#include "tokenizer/chat_template.h"

namespace sllm::apps {

TaskEvalRun run_task_eval(std::shared_ptr<const model::LlamaModel> model,
                          std::shared_ptr<const tok::Tokenizer> tok,
                          const std::vector<eval::TaskItem>& items,
                          const data::DatasetOptions& prompt, int64_t max_new_tokens,
                          int64_t max_seqs, const std::string& label) {
  Timer t;
  const auto tpl = tok::detect_chat_template(*tok);
  std::vector<std::vector<int32_t>> prompts;
  int64_t longest = 0;
  for (const auto& it : items) {
    prompts.push_back(data::encode_task_prompt(*tok, tpl, it.prompt, prompt));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts.back().size()));
  }
  engine::EngineOptions eo;
  eo.context = std::min<int64_t>(model->config().max_position, longest + max_new_tokens + 1);
  eo.max_seqs = max_seqs;
  eo.kv_tokens = eo.context * max_seqs;
  engine::Engine eng(model, tok, eo);
  engine::SamplingParams sp;
  sp.temperature = 0;
  sp.max_new_tokens = max_new_tokens;
  TaskEvalRun run;
  ProgressBar bar(label, static_cast<int64_t>(items.size()));
  std::vector<int64_t> ids;
  for (auto& p : prompts) ids.push_back(eng.submit({std::move(p), sp, nullptr}));
  size_t done = 0;
  while (eng.step()) {
    while (done < ids.size() && eng.finished(ids[done])) ++done;
    bar.update(static_cast<int64_t>(done));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    auto r = eng.take_result(ids[i]);
    run.results.push_back({items[i], r.text, eval::score_answer(items[i].expected, r.text)});
  }
  bar.finish();
  run.summary = eval::summarize(run.results);
  run.seconds = t.seconds();
  return run;
}

}  // namespace sllm::apps
