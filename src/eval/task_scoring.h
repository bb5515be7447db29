// Task accuracy for `sllm eval --task`: exact match, per-field match for JSON answers, and the
// failure report (failed prompts with expected vs. got, grouped by failure kind, worst first).
// Pure logic: generation happens in the apps layer.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sllm::eval {

struct TaskItem {
  std::string prompt;    // "prompt", or the messages before the last assistant turn (last user)
  std::string expected;  // "completion", or the last assistant message
  std::string task;      // "task" field, or "default"
  int64_t line = 0;      // 1-based line in the file
};

// Reads {"prompt","completion"[,"task"]} or {"messages":[...][,"task"]} lines; errors name
// path:line. `limit` > 0 keeps the first `limit` items.
std::vector<TaskItem> load_task_file(const std::string& path, int64_t limit = 0);

struct Score {
  bool exact = false;        // normalized strings equal, or parsed JSON values equal
  bool json = false;         // expected answer is a JSON object
  int64_t fields = 0;        // JSON: keys in the expected object
  int64_t fields_matched = 0;
  double field_score = 0.0;  // JSON: fields_matched / fields; text: 1 if exact else 0
  std::string kind;          // "" when exact; else e.g. "empty", "invalid_json", "missing_fields",
                             // "wrong_values", "wrong_label", "wrong_answer"
};

// Normalization: trim, collapse internal whitespace runs; JSON compared as parsed values, with
// the answer's first {...} object taken when text surrounds it (kind "extra_text" if not exact).
Score score_answer(const std::string& expected, const std::string& got);

struct TaskResult {
  TaskItem item;
  std::string got;
  Score score;
};

struct TaskSummary {
  int64_t n = 0, exact = 0;
  double exact_match = 0.0;   // percent
  double field_match = 0.0;   // percent, mean field_score over all items
  std::map<std::string, std::pair<int64_t, int64_t>> per_task;  // task -> (exact, n)
  std::map<std::string, int64_t> failure_kinds;                 // kind -> count
};

TaskSummary summarize(const std::vector<TaskResult>& results);

// Markdown: summary table, per-task table, failures grouped by kind, the ten worst first
// (lowest field score), each with prompt, expected and got.
std::string render_report(const std::string& title, const TaskSummary& s,
                          const std::vector<TaskResult>& results);

}  // namespace sllm::eval
