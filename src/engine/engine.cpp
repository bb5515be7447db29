#include "engine/engine.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/timer.h"

namespace sllm::engine {

struct Engine::Sequence {
  int64_t id = 0;
  kv::SeqId kv_id = -1;
  Request req;
  Sampler sampler;
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t computed = 0;         // tokens whose K/V are in the cache
  int64_t prompt_len = 0, max_new = 0, reserved_blocks = 0;
  std::unique_ptr<tok::StreamDecoder> decoder;
  std::string text;
  size_t emitted = 0;
  size_t max_stop_len = 0;
  Timer timer;
  double first_token_ms = -1;
  std::vector<int32_t> generated;
  std::string finish_reason;

  Sequence(Request r) : req(std::move(r)), sampler(req.params) {}
};

Engine::Engine(std::shared_ptr<const model::LlamaModel> model,
               std::shared_ptr<const tok::Tokenizer> tok, EngineOptions opts)
    : model_(std::move(model)), tok_(std::move(tok)), opts_(opts) {
  const auto& c = model_->config();
  if (opts_.context <= 0) opts_.context = c.max_position;
  SLLM_CHECK(opts_.max_seqs > 0 && opts_.block_size > 0 && opts_.max_step_tokens > 0,
             "engine options must be positive (max_seqs {}, block_size {}, max_step_tokens {})",
             opts_.max_seqs, opts_.block_size, opts_.max_step_tokens);
  // Admission reserves per request, so one context-length pool serves many short requests.
  if (opts_.kv_tokens <= 0) opts_.kv_tokens = opts_.context;
  SLLM_CHECK(opts_.kv_tokens >= opts_.context,
             "KV cache of {} tokens cannot hold one sequence of the {}-token context",
             opts_.kv_tokens, opts_.context);
  kv::KvCacheSpec spec{c.num_layers, c.num_kv_heads, c.head_dim,
                       kv::BlockManager::blocks_needed(opts_.kv_tokens, opts_.block_size),
                       opts_.block_size};
  cache_ = std::make_unique<kv::KvCache>(spec, model_->dtype(), model_->device());
}

Engine::~Engine() = default;

int64_t Engine::submit(Request req) {
  req.params.validate();
  SLLM_CHECK(!req.prompt.empty(), "the prompt is empty: give some text to continue");
  const int64_t n = static_cast<int64_t>(req.prompt.size());
  SLLM_CHECK(n < opts_.context,
             "the prompt has {} tokens but the context holds {}: shorten the prompt or raise "
             "--ctx (the model supports {})",
             n, opts_.context, model_->config().max_position);
  for (int32_t t : req.prompt)
    SLLM_CHECK(t >= 0 && t < model_->config().vocab_size, "token id {} is outside the vocabulary",
               t);
  auto s = std::make_unique<Sequence>(std::move(req));
  s->id = next_id_++;
  s->tokens = s->req.prompt;
  s->prompt_len = n;
  s->max_new = std::min<int64_t>(s->req.params.max_new_tokens, opts_.context - n);
  s->decoder = std::make_unique<tok::StreamDecoder>(*tok_, /*skip_special=*/true);
  for (const auto& st : s->req.params.stop) s->max_stop_len = std::max(s->max_stop_len, st.size());
  s->reserved_blocks = kv::BlockManager::blocks_needed(n + s->max_new, opts_.block_size);
  waiting_.push_back(std::move(s));
  return next_id_ - 1;
}

void Engine::admit() {
  // Admission reserves the blocks a request can ever need, so a running sequence never
  // runs out of KV space and nothing has to be preempted.
  const int64_t total = cache_->manager().num_blocks();
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < opts_.max_seqs &&
         reserved_blocks_ + waiting_.front()->reserved_blocks <= total) {
    auto s = std::move(waiting_.front());
    waiting_.pop_front();
    s->kv_id = cache_->manager().add_sequence();
    reserved_blocks_ += s->reserved_blocks;
    s->timer.reset();
    running_.push_back(std::move(s));
  }
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

void Engine::finish(Sequence& s, const std::string& reason) {
  s.finish_reason = reason;
  if (reason != "stop_string") s.text += s.decoder->flush();
  emit_text(s, true);
  Result r;
  r.tokens = s.generated;
  r.text = s.text;
  r.finish_reason = reason == "stop_string" ? "stop" : reason;
  r.prompt_tokens = s.prompt_len;
  r.first_token_ms = s.first_token_ms;
  r.total_ms = s.timer.ms();
  done_[s.id] = std::move(r);
  cache_->manager().free(s.kv_id);
  reserved_blocks_ -= s.reserved_blocks;
}

bool Engine::step() {
  admit();
  if (running_.empty()) return !waiting_.empty();
  Timer t;
  // Decode sequences (one pending token) first, then prefill chunks within the budget.
  std::stable_sort(running_.begin(), running_.end(), [](const auto& a, const auto& b) {
    return (a->tokens.size() - a->computed == 1) > (b->tokens.size() - b->computed == 1);
  });
  int64_t budget = opts_.max_step_tokens;
  struct Item {
    Sequence* s;
    int64_t start, n;
  };
  std::vector<Item> items;
  for (auto& s : running_) {
    if (budget <= 0) break;
    const int64_t n =
        std::min<int64_t>(static_cast<int64_t>(s->tokens.size()) - s->computed, budget);
    items.push_back({s.get(), s->computed, n});
    budget -= n;
  }
  auto& mgr = cache_->manager();
  const int64_t B = static_cast<int64_t>(items.size());
  int64_t N = 0, max_q = 0, max_kv = 0;
  for (const auto& it : items) {
    cache_->apply(mgr.append(it.s->kv_id, static_cast<int32_t>(it.n)));
    N += it.n;
    max_q = std::max(max_q, it.n);
    max_kv = std::max(max_kv, it.start + it.n);
  }
  model::BatchLayout lay;
  lay.num_seqs = B;
  lay.max_q = max_q;
  lay.max_kv = max_kv;
  auto i64 = at::TensorOptions().dtype(at::kLong);
  auto tokens = at::empty({N}, i64), positions = at::empty({N}, i64), slots = at::empty({N}, i64);
  auto kv_slots = at::zeros({B * max_kv}, i64);
  bool padded = false, need_mask = max_q > 1;
  std::vector<int64_t> logit_rows;
  std::vector<Sequence*> sampled;
  int64_t off = 0;
  for (int64_t b = 0; b < B; ++b) {
    const auto& it = items[b];
    padded |= it.n != max_q;
    need_mask |= it.start + it.n != max_kv;
    auto* tp = tokens.data_ptr<int64_t>() + off;
    auto* pp = positions.data_ptr<int64_t>() + off;
    for (int64_t j = 0; j < it.n; ++j) {
      tp[j] = it.s->tokens[it.start + j];
      pp[j] = it.start + j;
    }
    mgr.slots(it.s->kv_id, static_cast<int32_t>(it.start), static_cast<int32_t>(it.n),
              slots.data_ptr<int64_t>() + off);
    mgr.slots(it.s->kv_id, 0, static_cast<int32_t>(it.start + it.n),
              kv_slots.data_ptr<int64_t>() + b * max_kv);
    if (it.start + it.n == static_cast<int64_t>(it.s->tokens.size())) {
      logit_rows.push_back(off + it.n - 1);
      sampled.push_back(it.s);
    }
    off += it.n;
  }
  if (padded) {
    auto gather = at::zeros({B * max_q}, i64), scatter = at::empty({N}, i64);
    int64_t o = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < items[b].n; ++j, ++o) {
        gather.data_ptr<int64_t>()[b * max_q + j] = o;
        scatter.data_ptr<int64_t>()[o] = b * max_q + j;
      }
    lay.q_gather = gather.to(model_->device());
    lay.q_scatter = scatter.to(model_->device());
  }
  if (need_mask) {
    // Query j of sequence b sits at position start+j and sees keys 0..start+j.
    auto mask = at::full({B, 1, max_q, max_kv}, -std::numeric_limits<float>::infinity());
    auto m = mask.accessor<float, 4>();
    for (int64_t b = 0; b < B; ++b) {
      const auto& it = items[b];
      for (int64_t j = 0; j < max_q; ++j) {
        const int64_t last = j < it.n ? it.start + j : 0;  // padded rows: see key 0 only
        for (int64_t k = 0; k <= last; ++k) m[b][0][j][k] = 0.f;
      }
    }
    lay.attn_mask = mask.to(model_->device());
  }
  const auto dev = model_->device();
  lay.padded = padded;
  lay.tokens = tokens.to(dev);
  lay.positions = positions.to(dev);
  lay.slot_mapping = slots.to(dev);
  lay.kv_slots = kv_slots.to(dev);
  lay.logits_index = at::tensor(logit_rows, i64).to(dev);

  at::Tensor logits;
  {
    at::NoGradGuard no_grad;
    logits = model_->forward_step(lay, *cache_).to(at::kCPU).contiguous();
  }
  for (const auto& it : items) it.s->computed += it.n;
  const int64_t vocab = logits.size(1);
  for (size_t i = 0; i < sampled.size(); ++i) {
    Sequence& s = *sampled[i];
    const int32_t tok = s.sampler.sample(logits.data_ptr<float>() + i * vocab, vocab, s.tokens);
    if (s.first_token_ms < 0) s.first_token_ms = s.timer.ms();
    const bool is_stop =
        !s.req.params.ignore_eos &&
        std::find(tok_->stop_ids.begin(), tok_->stop_ids.end(), tok) != tok_->stop_ids.end();
    if (is_stop) {
      finish(s, "stop");
      continue;
    }
    s.tokens.push_back(tok);
    s.generated.push_back(tok);
    s.text += s.decoder->push(tok);
    bool stopped = false;
    for (const auto& st : s.req.params.stop) {
      const size_t from = s.text.size() >= st.size() + 8 ? s.text.size() - st.size() - 8 : 0;
      if (auto pos = s.text.find(st, from); !st.empty() && pos != std::string::npos) {
        s.text.resize(pos);
        stopped = true;
        break;
      }
    }
    if (stopped) {
      finish(s, "stop_string");
    } else if (static_cast<int64_t>(s.generated.size()) >= s.max_new) {
      finish(s, "length");
    } else {
      emit_text(s, false);
    }
  }
  std::erase_if(running_, [](const auto& s) { return !s->finish_reason.empty(); });
  stats_.steps++;
  const double secs = t.seconds();
  if (max_q == 1) {
    stats_.decode_tokens += N;
    stats_.decode_s += secs;
  } else {
    stats_.prefill_tokens += N;
    stats_.prefill_s += secs;
  }
  return !running_.empty() || !waiting_.empty();
}

bool Engine::finished(int64_t id) const { return done_.count(id) > 0; }

Result Engine::take_result(int64_t id) {
  auto it = done_.find(id);
  SLLM_CHECK(it != done_.end(), "request {} has not finished", id);
  Result r = std::move(it->second);
  done_.erase(it);
  return r;
}

std::vector<Result> Engine::generate(std::vector<Request> reqs) {
  std::vector<int64_t> ids;
  for (auto& r : reqs) ids.push_back(submit(std::move(r)));
  while (step()) {
  }
  std::vector<Result> out;
  for (auto id : ids) out.push_back(take_result(id));
  return out;
}

}  // namespace sllm::engine
