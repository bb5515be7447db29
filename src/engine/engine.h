// Inference session over a shared, immutable model: owns the paged KV cache, the
// scheduler (continuous batching: decode tokens and prefill chunks in one step) and
// per-request sampling state. Single-prompt generation is a batch of one.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

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
};

struct Request {
  std::vector<int32_t> prompt;  // token ids (BOS already added if the model wants it)
  SamplingParams params;
  // Called with newly completed text (UTF-8 safe, stop strings held back) as it is produced.
  std::function<void(const std::string&)> on_text;
};

struct Result {
  std::vector<int32_t> tokens;  // generated ids (stop token excluded)
  std::string text;
  std::string finish_reason;  // "stop" (eos, stop token or stop string) | "length"
  int64_t prompt_tokens = 0;
  double first_token_ms = 0, total_ms = 0;
};

struct EngineStats {
  int64_t steps = 0, prefill_tokens = 0, decode_tokens = 0;
  double prefill_s = 0, decode_s = 0;
};

class Engine {
 public:
  Engine(std::shared_ptr<const model::LlamaModel> model, std::shared_ptr<const tok::Tokenizer> tok,
         EngineOptions opts = {});
  ~Engine();

  // Queues a request; validates it (empty prompt, prompt longer than the context).
  int64_t submit(Request req);
  // Runs one scheduler step; returns false when nothing is left to do.
  bool step();
  bool finished(int64_t id) const;
  Result take_result(int64_t id);
  // Convenience: submit all, run to completion, results in request order.
  std::vector<Result> generate(std::vector<Request> reqs);

  const EngineStats& stats() const { return stats_; }
  const kv::KvCache& cache() const { return *cache_; }
  int64_t context() const { return opts_.context; }

 private:
  struct Sequence;
  void admit();
  void finish(Sequence& s, const std::string& reason);
  void emit_text(Sequence& s, bool final);

  std::shared_ptr<const model::LlamaModel> model_;
  std::shared_ptr<const tok::Tokenizer> tok_;
  EngineOptions opts_;
  std::unique_ptr<kv::KvCache> cache_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::map<int64_t, Result> done_;
  int64_t next_id_ = 0;
  int64_t reserved_blocks_ = 0;
  EngineStats stats_;
};

}  // namespace sllm::engine
