#include "apps/task_eval.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/progress.h"
#include "core/timer.h"
#include "engine/engine.h"
#include "io/atomic_write.h"
#include "load/bnb_layout.h"
#include "tokenizer/chat_template.h"

namespace sllm::apps {
namespace {

std::string describe(const model::LlamaModel& m, const tok::ChatTemplate& tpl,
                     const TaskEvalSettings& s) {
  const auto& l = m.layers().front().linears().front().linear;
  std::string tmpl = "none (raw prompt)";
  if (s.prompt.chat_template)
    tmpl = tok::to_string(tpl.format) + (s.prompt.system.empty()
                                             ? " (system: the template's default)"
                                             : " (system: \"" + s.prompt.system + "\")");
  return fmt::format(
      "greedy, max_new_tokens {}, stop at end of turn / EOS, chat template {}, dtype {}, "
      "decoder weights {}{}, {} answers decoded together",
      s.max_new_tokens, tmpl, load::bnb::dtype_name(m.dtype()), l.format_name(),
      m.lora_parameters().empty() ? "" : " + LoRA", s.max_seqs);
}

}  // namespace

TaskEvalRun run_task_eval(std::shared_ptr<const model::LlamaModel> model,
                          std::shared_ptr<const tok::Tokenizer> tok,
                          const std::vector<eval::TaskItem>& items, const TaskEvalSettings& s,
                          const std::string& label) {
  Timer t;
  at::NoGradGuard no_grad;
  const auto tpl = tok::detect_chat_template(*tok);
  TaskEvalRun run;
  run.settings = describe(*model, tpl, s);
  log::info("{}: {}", label, run.settings);
  std::vector<std::vector<int32_t>> prompts;
  int64_t longest = 0;
  for (const auto& it : items) {
    prompts.push_back(data::encode_task_prompt(*tok, tpl, it.prompt, s.prompt));
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts.back().size()));
  }
  engine::EngineOptions eo;
  eo.context = std::min<int64_t>(model->config().max_position, longest + s.max_new_tokens + 1);
  eo.max_seqs = s.max_seqs;
  eo.kv_tokens = eo.context * s.max_seqs;
  engine::Engine eng(model, tok, eo);
  engine::SamplingParams sp;
  sp.temperature = 0;
  sp.max_new_tokens = s.max_new_tokens;
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

std::string render_task_report(const std::string& title, const TaskEvalRun& r) {
  auto md = eval::render_report(title, r.summary, r.results);
  const auto eol = md.find('\n');  // the title line
  const auto at = eol == std::string::npos ? md.size() : eol + 1;
  return md.insert(at, "\nGeneration: " + r.settings + ".\n");
}

void write_predictions(const std::string& path, const TaskEvalRun& r) {
  std::string out;
  for (const auto& x : r.results)
    out += nlohmann::json{{"line", x.item.line},         {"task", x.item.task},
                          {"expected", x.item.expected}, {"got", x.got},
                          {"exact", x.score.exact},      {"field_score", x.score.field_score}}
               .dump() +
           "\n";
  io::write_file_atomic(path, out);
}

}  // namespace sllm::apps
