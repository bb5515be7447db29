// Sampling and finishing: the next token of each sequence, stop conditions, streamed text and
// results.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "engine/draft.h"
#include "engine/engine.h"
#include "engine/sequence.h"

namespace sllm::engine {

namespace {

// log_softmax(row)[tok] and the top n entries, in double for the normalizer.
TokenLogprob token_logprob(const float* row, int64_t vocab, int32_t tok, int32_t n) {
  const float mx = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(row[i] - mx));
  const double lse = static_cast<double>(mx) + std::log(sum);
  TokenLogprob out;
  out.token = tok;
  out.logprob = static_cast<float>(row[tok] - lse);
  if (n > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    const auto k = std::min<int64_t>(n, vocab);
    // Ties by the lower id, as argmax picks.
    std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    for (int64_t i = 0; i < k; ++i)
      out.top.emplace_back(ids[i], static_cast<float>(row[ids[i]] - lse));
  }
  return out;
}

}  // namespace

std::string_view to_string(FinishReason r) {
  switch (r) {
    case FinishReason::stop:
    case FinishReason::stop_string:
      return "stop";
    case FinishReason::length:
      return "length";
    case FinishReason::cancelled:
      return "cancelled";
  }
  SLLM_FAIL("unknown finish reason {}", static_cast<int>(r));
}

void Engine::sample(const std::vector<Chunk>& chunks, const at::Tensor& logits) {
  const int64_t vocab = logits.size(1);
  int64_t row = 0;
  for (const auto& c : chunks) {
    if (!c.samples()) continue;
    float* l = logits.data_ptr<float>() + row * vocab;
    row += c.num_logits();
    Sequence& s = sequence(c.seq);
    if (s.cancelled) continue;
    if (s.req.logprobs >= 0) {  // the raw rows, before the sampler changes them in place
      s.lp_rows.assign(l, l + c.num_logits() * vocab);
      s.lp_next = 0;
      s.lp_vocab = vocab;
    }
    if (c.seq->draft > 0) {
      verify(s, l, vocab);
      continue;
    }
    if (s.req.constraint && !s.req.constraint->mask(l, vocab)) {
      finish(s, FinishReason::stop);  // nothing may follow: the output ends here
      continue;
    }
    const int32_t tok = s.sampler.sample(l, vocab, s.st.tokens);
    if (s.first_token_ms < 0) s.first_token_ms = s.timer.ms();
    if (auto reason = accept(s, tok))
      finish(s, *reason);  // s is gone
    else
      emit_text(s, false);
  }
}

std::optional<FinishReason> Engine::accept(Sequence& s, int32_t tok) {
  if (!s.req.params.ignore_eos &&
      std::find(tok_->stop_ids.begin(), tok_->stop_ids.end(), tok) != tok_->stop_ids.end())
    return FinishReason::stop;
  s.st.tokens.push_back(tok);
  s.generated.push_back(tok);
  if (s.req.constraint) s.req.constraint->advance(tok);
  if (s.req.logprobs >= 0) {
    const auto vocab = static_cast<size_t>(s.lp_vocab);
    SLLM_CHECK((s.lp_next + 1) * vocab <= s.lp_rows.size(),
               "no logits row left for the log-probability of token {}", tok);
    s.logprobs.push_back(
        token_logprob(s.lp_rows.data() + s.lp_next++ * vocab, s.lp_vocab, tok, s.req.logprobs));
    if (s.req.on_logprob) s.req.on_logprob(s.logprobs.back());
  }
  if (s.req.on_token) s.req.on_token(tok);
  s.text += s.decoder->push(tok);
  for (const auto& st : s.req.params.stop) {
    const size_t from = s.text.size() >= st.size() + 8 ? s.text.size() - st.size() - 8 : 0;
    if (auto pos = s.text.find(st, from); !st.empty() && pos != std::string::npos) {
      s.text.resize(pos);
      return FinishReason::stop_string;
    }
  }
  if (s.req.constraint && s.req.constraint->complete()) return FinishReason::stop;
  if (static_cast<int64_t>(s.generated.size()) >= s.max_new) return FinishReason::length;
  return std::nullopt;
}

void Engine::emit_text(Sequence& s, bool final) {
  size_t end = s.text.size();
  if (!final && s.max_stop_len > 1) {
    // Hold back a tail that could still become a stop string, on a UTF-8 boundary.
    end = s.text.size() >= s.max_stop_len - 1 ? s.text.size() - (s.max_stop_len - 1) : 0;
    while (end > s.emitted && end < s.text.size() &&
           (static_cast<uint8_t>(s.text[end]) & 0xC0) == 0x80)
      --end;
  }
  if (end > s.emitted) {
    if (s.req.on_text) s.req.on_text(s.text.substr(s.emitted, end - s.emitted));
    s.emitted = end;
  }
}

void Engine::finish(Sequence& s, FinishReason reason) {
  s.finishing = true;
  if (reason != FinishReason::stop_string) s.text += s.decoder->flush();
  emit_text(s, true);
  Result r;
  r.tokens = s.generated;
  r.logprobs = std::move(s.logprobs);
  r.text = s.text;
  r.finish_reason = reason;
  r.prompt_tokens = s.prompt_len;
  r.first_token_ms = std::max(0.0, s.first_token_ms);  // 0: cancelled before its first token
  r.total_ms = s.timer.ms();
  r.draft_steps = s.draft_steps;
  r.draft_proposed = s.draft_proposed;
  r.draft_accepted = s.draft_accepted;
  const int64_t id = s.st.id;
  if (drafter_) drafter_->release(id);
  done_[id] = std::move(r);
  sched_->remove(&s.st);
  live_.erase(id);
}

}  // namespace sllm::engine
