// Task accuracy of a model on a JSONL task file: greedy answers for every prompt (batched by the
// engine), scored by eval/task_scoring. The one protocol behind `sllm eval --task` and the
// before/after scores of sft / qlora-train, so that the same model and file score the same.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/jsonl_dataset.h"
#include "eval/task_scoring.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace sllm::apps {

struct TaskEvalSettings {
  data::DatasetOptions prompt;  // chat_template, system: prompts encoded as training encodes them
  int64_t max_new_tokens = 128;
  int64_t max_seqs = 16;  // answers decoded together
};

struct TaskEvalRun {
  eval::TaskSummary summary;
  std::vector<eval::TaskResult> results;
  double seconds = 0;
  // The generation settings in words: decoding, max_new_tokens, template, dtype, weights.
  std::string settings;
};

TaskEvalRun run_task_eval(std::shared_ptr<const model::LlamaModel> model,
                          std::shared_ptr<const tok::Tokenizer> tok,
                          const std::vector<eval::TaskItem>& items, const TaskEvalSettings& s,
                          const std::string& label);

// The failure report (eval::render_report) with the settings under its title.
std::string render_task_report(const std::string& title, const TaskEvalRun& r);

// One JSON object per item, in file order: line, task, expected, got, exact, field_score.
void write_predictions(const std::string& path, const TaskEvalRun& r);

}  // namespace sllm::apps
