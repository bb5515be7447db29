// The engine's state of one request (private to src/engine).
#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/timer.h"
#include "engine/engine.h"
#include "engine/spec_sampling.h"

namespace sllm::engine {

struct Engine::Sequence {
  SeqState st;  // the scheduler's part: id, KV sequence, tokens, computed
  Request req;
  Sampler sampler;
  int64_t prompt_len = 0, max_new = 0;
  std::unique_ptr<tok::StreamDecoder> decoder;
  std::string text;
  size_t emitted = 0;  // bytes of text passed to on_text
  size_t max_stop_len = 0;
  Timer timer;  // from the first admission
  bool started = false;
  double first_token_ms = -1;
  std::vector<int32_t> generated;
  // Log-probabilities (req.logprobs >= 0): the raw logits rows of this step, one per token
  // the step may accept (more than one when verifying drafts), the next row to use, and the
  // entries of the generated tokens.
  std::vector<float> lp_rows;
  size_t lp_next = 0;
  int64_t lp_vocab = 0;
  std::vector<TokenLogprob> logprobs;
  bool cancelled = false;  // cancel asked for during a step
  bool finishing = false;
  // Speculative decoding: the draft's distribution of each pending draft token (empty for
  // n-gram drafts), the draws of verification and of a sampling draft, and counts.
  std::vector<Distribution> draft_q;
  std::mt19937_64 verify_rng, draft_rng;
  int64_t draft_steps = 0, draft_proposed = 0, draft_accepted = 0;

  explicit Sequence(Request r)
      : req(std::move(r)),
        sampler(req.params),
        verify_rng(req.params.seed ^ 0x5bd1e995u),
        draft_rng(req.params.seed ^ 0x9e3779b9u) {}
};

}  // namespace sllm::engine
