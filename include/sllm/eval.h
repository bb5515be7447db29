// Quality: perplexity of a text (the protocol of `sllm eval --ppl`, docs/eval.md) and accuracy
// on a JSONL task file (that of `sllm eval --task`). Both are read-only over the Model.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sllm/model.h"

namespace sllm {

struct PerplexityResult {
  double perplexity = 0, mean_nll = 0;
  int64_t tokens = 0, scored = 0, windows = 0;
  // With a reference model: mean/max KL(P_ref || P_model) in nats and the % of positions where
  // both models pick the same top token.
  bool has_reference = false;
  double reference_perplexity = 0, mean_kld = 0, max_kld = 0, same_top = 0;
};

// Consecutive windows of ctx tokens; every token but a window's first is scored.
PerplexityResult perplexity(const Model& model, const std::string& text, int64_t ctx = 512,
                            const Model* reference = nullptr);

struct TaskEvalOptions {
  int64_t limit = 0;  // first N items (0: all)
  int64_t max_new_tokens = 128;
  int64_t max_seqs = 16;
  std::string chat_template = "auto";  // auto | true | false, as in training
  std::string system;
};

struct TaskItemResult {
  std::string id, task, prompt, expected, got;
  bool exact = false;
  double field_score = 0;
  std::string failure;  // "" when exact, else the failure kind
};

struct TaskEvalResult {
  int64_t n = 0, exact = 0;
  double exact_match = 0, field_match = 0;                      // percent
  std::map<std::string, std::pair<int64_t, int64_t>> per_task;  // task -> (exact, n)
  std::vector<TaskItemResult> items;
  std::string settings;  // the generation settings in words (as `sllm eval --task` prints them)
};

TaskEvalResult evaluate_task(const Model& model, const std::string& task_file,
                             const TaskEvalOptions& options = {});

}  // namespace sllm
