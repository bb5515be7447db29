// JSONL training data -> tokenized examples with loss masks. Formats:
//   {"text": "..."}                          (loss after `response_template` when completion_only)
//   {"prompt": "...", "completion": "..."}   (loss on the completion)
//   {"messages": [{"role": ..., "content": ...}, ...]}  (chat template; loss on assistant turns)
// Every target ends with the EOS token, which is labelled (never masked as padding), so the tuned
// model learns to stop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace sllm::data {

constexpr int32_t kIgnore = -100;  // label of a position that carries no loss

struct DatasetOptions {
  std::string format = "auto";  // auto | text | prompt_completion | messages
  int64_t max_seq_length = 1024;
  bool completion_only = true;  // false: loss on every token (prompt included)
  bool packing = false;         // concatenate examples into max_seq_length rows (the caller
                                // applies pack() after split(); load_jsonl never packs)
  bool skip_bad_lines = false;  // false: a malformed line is an error naming file:line
  bool chat_template = true;    // prompt/completion: wrap the prompt as a user turn
  std::string system;           // system prompt for chat-wrapped prompts ("" = template default)
  std::string response_template = "### Response:";  // {"text"} + completion_only
};

struct Example {
  std::vector<int32_t> ids;     // input ids
  std::vector<int32_t> labels;  // same length; kIgnore where no loss (HF convention, unshifted)
};

struct DatasetStats {
  int64_t lines = 0;              // non-empty lines read
  int64_t examples = 0;           // examples kept
  int64_t skipped_bad = 0;        // malformed lines skipped (skip_bad_lines)
  int64_t truncated = 0;          // examples cut to max_seq_length
  int64_t dropped_no_target = 0;  // examples with no labelled token after truncation
  int64_t tokens = 0;             // total input tokens
  int64_t target_tokens = 0;      // total labelled tokens
};

struct Dataset {
  std::string path;
  std::vector<Example> examples;
  DatasetStats stats;
};

// Prompt ids exactly as generation sees them (chat template + generation prompt, or BOS + text).
// Shared by training and task evaluation so both format prompts identically.
std::vector<int32_t> encode_task_prompt(const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                                        const std::string& prompt, const DatasetOptions& o);

// Reads and tokenizes a JSONL file. Errors (sllm::Error) name path:line and what is wrong;
// an empty result is an error ("no examples in ...").
Dataset load_jsonl(const std::string& path, const tok::Tokenizer& t, const tok::ChatTemplate& tpl,
                   const DatasetOptions& o);

// Deterministic split: `eval_fraction` of the examples (at least 1, at most n - 1) go to the second
// set; the same seed gives the same split on every standard library. Each part keeps file order;
// its stats count its examples and tokens (the per-file reading counters are zero).
std::pair<Dataset, Dataset> split(const Dataset& d, double eval_fraction, uint64_t seed);

// Concatenates examples (in order) into rows of exactly max_seq_length tokens (last row may be
// shorter); labels keep their masks; the first label of each appended example stays as is.
std::vector<Example> pack(const std::vector<Example>& ex, int64_t max_seq_length);

}  // namespace sllm::data
