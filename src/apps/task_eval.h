// Task accuracy of a model on a JSONL task file: greedy answers for every prompt (batched by the
// engine), scored by eval/task_scoring. Shared by `sllm eval --task` and the training reports.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/jsonl_dataset.h"
#include "eval/task_scoring.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace sllm::apps {

struct TaskEvalRun {
  eval::TaskSummary summary;
  std::vector<eval::TaskResult> results;
  double seconds = 0;
};

// Prompts are encoded exactly as training encodes them (data::encode_task_prompt with `prompt`).
TaskEvalRun run_task_eval(std::shared_ptr<const model::LlamaModel> model,
                          std::shared_ptr<const tok::Tokenizer> tok,
                          const std::vector<eval::TaskItem>& items,
                          const data::DatasetOptions& prompt, int64_t max_new_tokens,
                          int64_t max_seqs, const std::string& label);

}  // namespace sllm::apps
