// Speculative decoding in the step loop: drafts are appended to decoding sequences before the
// step is scheduled, so the scheduler's multi-token chunk computes the pending token and the
// drafts in one forward; the rows of their logits verify the drafts, and what is rejected is
// cut from the tokens and truncated from both KV caches.
#include <ATen/ATen.h>

#include <algorithm>

#include "core/error.h"
#include "core/timer.h"
#include "engine/draft.h"
#include "engine/engine.h"
#include "engine/sequence.h"

namespace sllm::engine {

namespace {

// The draft model must speak the target's token ids: same tokenizer, every id present.
void check_same_vocabulary(const tok::Tokenizer& target, const tok::Tokenizer& draft,
                           int64_t target_model_vocab, int64_t draft_model_vocab) {
  const char* fix =
      "use a draft that shares the target's tokenizer (a smaller model of the same family, or a "
      "student distilled from the target), or --draft ngram";
  SLLM_CHECK(target.vocab_size() == draft.vocab_size(),
             "the draft model's tokenizer has {} tokens but the target's has {}: {}",
             draft.vocab_size(), target.vocab_size(), fix);
  for (int32_t i = 0; i < target.vocab_size(); ++i)
    SLLM_CHECK(target.piece(i) == draft.piece(i),
               "the draft model's vocabulary differs from the target's at token {} ('{}' vs "
               "'{}'): {}",
               i, draft.piece(i), target.piece(i), fix);
  SLLM_CHECK(draft_model_vocab >= target_model_vocab,
             "the draft model's vocabulary has {} rows but the target's has {}: {}",
             draft_model_vocab, target_model_vocab, fix);
}

}  // namespace

void Engine::enable_speculation(SpeculativeOptions o) {
  SLLM_CHECK(live_.empty() && done_.empty(),
             "speculative decoding must be enabled before the first request");
  SLLM_CHECK(o.num_tokens >= 1 && o.num_tokens <= kMaxSpeculativeTokens,
             "num_speculative_tokens must be in [1, {}], got {}", kMaxSpeculativeTokens,
             o.num_tokens);
  SLLM_CHECK(o.num_tokens < opts_.max_step_tokens,
             "num_speculative_tokens ({}) must be below engine.max_step_tokens ({})", o.num_tokens,
             opts_.max_step_tokens);
  if (o.draft_model) {
    SLLM_CHECK(o.draft_tokenizer, "a draft model needs its tokenizer to check the vocabulary");
    check_same_vocabulary(*tok_, *o.draft_tokenizer, model_->config().vocab_size,
                          o.draft_model->config().vocab_size);
    SLLM_CHECK(o.draft_model->device() == model_->device(),
               "the draft model is on {} but the target on {}: load both on one device",
               o.draft_model->device().str(), model_->device().str());
    // Each sequence's draft runs up to k tokens ahead of the target's cache, and the target's
    // shared prefix blocks are not shared in the draft's: room for the former; the drafter
    // drafts less for a sequence that finds its pool full.
    const int64_t draft_tokens =
        opts_.kv_tokens + opts_.max_seqs * (o.num_tokens + int64_t{opts_.block_size});
    drafter_ = make_model_drafter(o.draft_model, model_->config().vocab_size, draft_tokens,
                                  opts_.block_size);
  } else {
    drafter_ = make_ngram_drafter(o.ngram_min, o.ngram_max);
  }
  spec_k_ = o.num_tokens;
}

void Engine::propose() {
  // Decoding sequences come first in a step: their pending tokens and drafts must all fit the
  // step's budget, so that each verifies in one chunk.
  int64_t budget = opts_.max_step_tokens;
  for (const SeqState* st : sched_->running())
    if (st->decoding()) --budget;
  std::vector<DraftRequest> reqs;
  std::vector<Sequence*> seqs;
  for (SeqState* st : sched_->running()) {
    // A sequence still holding drafts (preempted with them) verifies those first.
    if (!st->decoding() || st->draft > 0 || budget <= 0) continue;
    Sequence& s = sequence(st);
    if (s.cancelled || s.req.constraint) continue;
    // Past the last token max_new_tokens allows, a draft could not be kept (nor has KV room).
    const int64_t left = s.max_new - static_cast<int64_t>(s.generated.size()) - 1;
    const int64_t k = std::min({spec_k_, left, budget, drafter_->max_length() - st->length()});
    if (k <= 0) continue;
    DraftRequest r;
    r.id = st->id;
    r.tokens = &st->tokens;
    r.k = k;
    r.params = &s.req.params;
    r.rng = &s.draft_rng;
    reqs.push_back(std::move(r));
    seqs.push_back(&s);
    budget -= k;
  }
  if (reqs.empty()) return;
  Timer t;
  drafter_->propose(reqs);
  stats_.draft_s += t.seconds();
  for (size_t i = 0; i < reqs.size(); ++i) {
    Sequence& s = *seqs[i];
    auto& out = reqs[i].out;
    SLLM_CHECK(static_cast<int64_t>(out.size()) <= reqs[i].k, "the drafter proposed too many");
    s.st.tokens.insert(s.st.tokens.end(), out.begin(), out.end());
    s.st.draft = static_cast<int64_t>(out.size());
    s.draft_q = std::move(reqs[i].q);
  }
}

void Engine::verify(Sequence& s, float* rows, int64_t vocab) {
  const int64_t k = s.st.draft;
  const int64_t base = s.st.length() - k;  // tokens before the drafts
  const std::vector<int32_t> drafts(s.st.tokens.end() - k, s.st.tokens.end());
  const std::vector<Distribution> qs = std::move(s.draft_q);
  s.draft_q.clear();
  s.st.tokens.resize(static_cast<size_t>(base));
  s.st.draft = 0;
  stats_.spec_verifications++;
  s.draft_steps++;
  int64_t accepted = 0;
  for (int64_t i = 0; i <= k; ++i) {
    // Row i is the target's distribution after the tokens kept so far (history included).
    Distribution p = sampling_distribution(s.req.params, rows + i * vocab, vocab,
                                           s.st.tokens.data(), s.st.tokens.size());
    bool kept = false;
    int32_t tok;
    if (i < k) {
      // Counted when verified: drafts past a token that ends the sequence are not judged.
      stats_.draft_proposed++;
      s.draft_proposed++;
      const Verdict v = verify_draft(p, qs.empty() ? nullptr : &qs[i], drafts[i], s.verify_rng);
      kept = v.accepted;
      tok = v.token;
    } else {
      tok = draw(p, s.verify_rng);
    }
    if (kept) {
      ++accepted;
      stats_.draft_accepted++;
      s.draft_accepted++;
    }
    // The K/V of the positions before this hold final tokens: what the prefix cache may keep
    // if the sequence ends here.
    s.st.computed = base + accepted;
    if (auto reason = accept(s, tok)) {
      rejected_ += k - accepted;
      finish(s, *reason);  // s is gone, with its KV blocks and draft state
      return;
    }
    if (!kept) break;
  }
  rejected_ += k - accepted;
  // K/V stay valid for the tokens before the drafts and the accepted drafts; the last token
  // (the replacement or the bonus) is pending.
  s.st.computed = base + accepted;
  cache_->manager().truncate(s.st.kv_id, static_cast<int32_t>(s.st.computed));
  drafter_->commit(s.st.id, s.st.computed);
  emit_text(s, false);
}

}  // namespace sllm::engine
