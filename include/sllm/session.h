// Generation. A Session owns everything mutable about inference over one Model: the paged KV
// cache, the continuous-batching scheduler and each request's sampler. Requests submitted to one
// Session are decoded together in batches. A Session is not thread-safe: use it from one thread
// (several Sessions over the same Model may run on different threads).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sllm/model.h"

namespace sllm {

struct SamplingOptions {
  double temperature = 0.7;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off
  double min_p = 0.0;        // 0: off
  double repetition_penalty = 1.0;
  uint64_t seed = 42;
  int64_t max_new_tokens = 256;
  std::vector<std::string> stop;  // stop strings, not included in the output
  bool ignore_eos = false;
};

struct SessionOptions {
  int64_t context = 0;    // tokens per sequence (0: the model's maximum)
  int64_t kv_tokens = 0;  // KV-cache pool in tokens (0: one context)
  int32_t block_size = 16;
  int64_t max_seqs = 16;          // sequences decoded together
  int64_t max_step_tokens = 512;  // tokens per engine step (long prompts are prefilled in chunks)
};

struct GenerationRequest {
  // Either a prompt (raw text, or wrapped as one user turn when chat_template is true) or
  // messages (always rendered with the model's chat template).
  std::string prompt;
  std::vector<ChatMessage> messages;
  bool chat_template = false;
  std::string system;  // system prompt with chat_template and a plain prompt
  SamplingOptions sampling;
  // Called with each newly completed piece of text (never a split UTF-8 character; stop strings
  // held back until they are ruled out). Return false to cancel the request.
  std::function<bool(std::string_view)> on_text;
};

struct Generation {
  std::string text;
  std::vector<int32_t> tokens;  // generated ids, stop token excluded
  std::string finish_reason;    // stop | length | cancelled
  int64_t prompt_tokens = 0;
  double first_token_ms = 0, total_ms = 0;
};

class Session {
 public:
  explicit Session(const Model& model, const SessionOptions& options = {});
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  // Queues a request and returns its id; throws for an empty or over-long prompt.
  int64_t submit(GenerationRequest request);
  // Runs one scheduler step (prefill chunks and decode tokens of every running request);
  // false when nothing is left to do.
  bool step();
  bool finished(int64_t id) const;
  Generation take(int64_t id);  // the result of a finished request (once)
  // Stops a queued or running request now; its KV blocks are freed and its result keeps what
  // was generated, with finish_reason "cancelled".
  void cancel(int64_t id);

  // Submits all, runs to completion, returns results in request order.
  std::vector<Generation> generate(std::vector<GenerationRequest> requests);
  Generation generate(GenerationRequest request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sllm
