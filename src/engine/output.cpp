// Sampling and finishing: the next token of each sequence, stop conditions, streamed text and
// results.
#include <ATen/ATen.h>

#include <algorithm>

#include "core/error.h"
#include "engine/draft.h"
#include "engine/engine.h"
#include "engine/sequence.h"

namespace sllm::engine {

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
    if (c.seq->draft > 0) {
      verify(s, l, vocab);
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
  if (s.req.on_token) s.req.on_token(tok);
  s.text += s.decoder->push(tok);
  for (const auto& st : s.req.params.stop) {
    const size_t from = s.text.size() >= st.size() + 8 ? s.text.size() - st.size() - 8 : 0;
    if (auto pos = s.text.find(st, from); !st.empty() && pos != std::string::npos) {
      s.text.resize(pos);
      return FinishReason::stop_string;
    }
  }
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
