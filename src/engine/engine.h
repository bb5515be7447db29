// Inference session over a shared, immutable model: owns the paged KV cache, the
// scheduler (continuous batching: decode tokens and prefill chunks in one step) and
// per-request sampling state. Single-prompt generation is a batch of one.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/plan/batch_layout.h"
#include "engine/plan/scheduler.h"
#include "engine/plan/token_constraint.h"
#include "engine/sampler.h"
#include "kv/kv_cache.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace sllm::engine {

struct EngineOptions {
  int64_t context = 0;    // max tokens per sequence; 0: the model's max_position
  int64_t kv_tokens = 0;  // KV pool size in tokens; 0: one context
  int32_t block_size = 16;
  int64_t max_seqs = 16;          // sequences decoded together
  int64_t max_step_tokens = 512;  // token budget of one step (prefill is chunked to fit)
  // Full KV blocks of computed tokens stay cached by their tokens after a request ends, and a
  // request whose prompt starts with the same tokens shares them instead of computing them.
  bool prefix_caching = true;
};

// Speculative decoding (docs/speculative.md): a drafter proposes up to num_tokens tokens of each
// decoding sequence, one target forward verifies them all, and rejection sampling keeps the
// target's distribution (greedy output is the target's own).
struct SpeculativeOptions {
  int64_t num_tokens = 4;  // k, proposed per sequence and step
  // The draft model; null: n-gram prompt lookup. Its tokenizer must be the target's.
  std::shared_ptr<const model::LlamaModel> draft_model;
  std::shared_ptr<const tok::Tokenizer> draft_tokenizer;
  int64_t ngram_min = 1, ngram_max = 3;  // n-gram lengths matched, longest first
};
inline constexpr int64_t kMaxSpeculativeTokens = 32;

// The log-probability of one generated token and of the most likely tokens at its position,
// from the model's raw next-token distribution: log_softmax of the logits before penalties,
// temperature and truncation (what vLLM reports by default).
struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

struct Request {
  std::vector<int32_t> prompt;  // token ids (BOS already added if the model wants it)
  SamplingParams params;
  // Called with newly completed text (UTF-8 safe, stop strings held back) as it is produced.
  std::function<void(const std::string&)> on_text;
  // Called with each generated token id (stop tokens excluded), before the text it completes.
  std::function<void(int32_t)> on_token;
  // -1: no log-probabilities (no cost). N in [0, kMaxTopLogprobs]: each generated token's
  // TokenLogprob with its N most likely alternatives, in Result::logprobs and on_logprob.
  int32_t logprobs = -1;
  // Called with each generated token's TokenLogprob just before on_token.
  std::function<void(const TokenLogprob&)> on_logprob;
  // What the output must look like (e.g. a JSON object), or null. Stateful: one per request.
  // The sequence ends (FinishReason::stop) as soon as the output is complete; it is never
  // drafted for (speculation skips it).
  std::shared_ptr<TokenConstraint> constraint;
  // 0: the model as loaded. k > 0: with its served LoRA adapter k (lora::add_served_adapter);
  // requests on different adapters share a batch.
  int32_t adapter = 0;
};

enum class FinishReason {
  stop,         // eos or another stop token
  stop_string,  // a stop string appeared (cut from the text)
  length,       // max_new_tokens or the context end
  cancelled,    // Engine::cancel
};
// The name reported to users: "stop" (both stop kinds), "length", "cancelled".
std::string_view to_string(FinishReason r);

struct Result {
  std::vector<int32_t> tokens;         // generated ids (stop token excluded)
  std::vector<TokenLogprob> logprobs;  // one per token when Request::logprobs >= 0
  std::string text;
  FinishReason finish_reason = FinishReason::stop;
  int64_t prompt_tokens = 0;
  double first_token_ms = 0, total_ms = 0;
  // Speculative decoding only: verification steps, draft tokens proposed and accepted.
  int64_t draft_steps = 0, draft_proposed = 0, draft_accepted = 0;
};

struct EngineStats {
  int64_t steps = 0, prefill_tokens = 0, decode_tokens = 0;
  double prefill_s = 0, decode_s = 0;
  // Speculative decoding: verifications (one per sequence and step with drafts), draft tokens
  // proposed and accepted, seconds spent drafting (part of the step times above).
  int64_t spec_verifications = 0, draft_proposed = 0, draft_accepted = 0;
  double draft_s = 0;
  // Requests sent back to the queue to be computed again when the KV pool ran out.
  int64_t preemptions = 0;
  // Prefix caching, in tokens: prompts (and preempted sequences) looked up at admission, and
  // the part found in the cache.
  int64_t prefix_cache_queries = 0, prefix_cache_hits = 0;
  double prefix_cache_hit_rate() const {
    return prefix_cache_queries > 0 ? static_cast<double>(prefix_cache_hits) / prefix_cache_queries
                                    : 0.0;
  }
  double acceptance_rate() const {
    return draft_proposed > 0 ? static_cast<double>(draft_accepted) / draft_proposed : 0.0;
  }
  // Draft tokens accepted per verification (the tokens a step adds are this + 1).
  double mean_accepted() const {
    return spec_verifications > 0 ? static_cast<double>(draft_accepted) / spec_verifications : 0.0;
  }
};

class Drafter;

class Engine {
 public:
  Engine(std::shared_ptr<const model::LlamaModel> model, std::shared_ptr<const tok::Tokenizer> tok,
         EngineOptions opts = {});
  ~Engine();

  // Turns on speculative decoding; before the first submit. Checks k and that the draft
  // model's vocabulary is the target's.
  void enable_speculation(SpeculativeOptions o);
  bool speculative() const { return drafter_ != nullptr; }
  // Between steps: the same model with other served adapters (lora::add_served_adapter); its
  // shape must match. Running sequences go on with it.
  void replace_model(std::shared_ptr<const model::LlamaModel> m);

  // Queues a request; validates it (empty prompt, prompt longer than the context).
  int64_t submit(Request req);
  // Runs one scheduler step; returns false when nothing is left to do.
  bool step();
  // Stops a queued or running request now: its KV blocks go back to the pool and its result
  // (finish reason cancelled) holds what was generated so far. Returns false if it had already
  // finished. Called from an on_text callback, it takes effect when the step ends.
  bool cancel(int64_t id);
  bool finished(int64_t id) const;
  Result take_result(int64_t id);
  // Convenience: submit all, run to completion, results in request order.
  std::vector<Result> generate(std::vector<Request> reqs);

  const EngineStats& stats() const { return stats_; }
  const kv::KvCache& cache() const { return *cache_; }
  int64_t context() const { return opts_.context; }
  int64_t num_running() const;  // admitted, holding KV blocks
  int64_t num_waiting() const;  // queued, not yet admitted
  // A queued or running request's scheduler state (tokens, KV sequence); null once finished.
  const SeqState* state(int64_t id) const;

 private:
  struct Sequence;
  Sequence& sequence(const SeqState* st);
  // The forward of one step: logits [M, vocab] fp32 on the CPU for x.logits_index.
  at::Tensor forward(const LayoutIndices& x);
  // forward() with each chunk's served adapter applied to its rows.
  at::Tensor forward_with_adapters(const std::vector<Chunk>& chunks, const LayoutIndices& x);
  // Samples the next token of every chunk that reached its last token; finishes sequences.
  void sample(const std::vector<Chunk>& chunks, const at::Tensor& logits);
  // Appends a sampled token; returns why the sequence ends, if it does.
  std::optional<FinishReason> accept(Sequence& s, int32_t tok);
  void finish(Sequence& s, FinishReason reason);
  void emit_text(Sequence& s, bool final);
  // A sequence the scheduler sent back to the queue: its draft model state goes too.
  void preempted(Sequence& s);
  // Speculative decoding: drafts for the decoding sequences (appended to their tokens) before
  // the step is scheduled; after the forward, verifies them on rows [1 + drafts, vocab].
  void propose();
  void verify(Sequence& s, float* rows, int64_t vocab);

  std::shared_ptr<const model::LlamaModel> model_;
  std::shared_ptr<const tok::Tokenizer> tok_;
  EngineOptions opts_;
  std::unique_ptr<kv::KvCache> cache_;
  std::unique_ptr<Scheduler> sched_;
  std::map<int64_t, std::unique_ptr<Sequence>> live_;  // queued or running
  std::map<int64_t, Result> done_;
  std::vector<int64_t> cancels_;  // asked for during a step
  bool in_step_ = false;
  int64_t next_id_ = 0;
  EngineStats stats_;
  std::unique_ptr<Drafter> drafter_;
  int64_t spec_k_ = 0;
  int64_t rejected_ = 0;  // draft tokens computed and dropped in this step
};

}  // namespace sllm::engine
