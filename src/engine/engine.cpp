#include "engine/engine.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "core/error.h"
#include "core/log.h"
#include "core/timer.h"
#include "engine/draft.h"
#include "engine/sequence.h"

namespace sllm::engine {

namespace {

// The tensors of model::BatchLayout from the step's indices, on dev.
model::BatchLayout to_batch_layout(const LayoutIndices& x, at::Device dev) {
  auto i64 = [&](const std::vector<int64_t>& v) { return at::tensor(v, at::kLong).to(dev); };
  model::BatchLayout lay;
  lay.num_seqs = x.num_seqs;
  lay.max_q = x.max_q;
  lay.max_kv = x.max_kv;
  lay.padded = x.padded;
  if (x.padded) {
    lay.q_gather = i64(x.q_gather);
    lay.q_scatter = i64(x.q_scatter);
  }
  if (x.need_mask) {
    auto mask = at::empty({x.num_seqs, 1, x.max_q, x.max_kv}, at::kFloat);
    fill_attn_mask(x, mask.data_ptr<float>());
    lay.attn_mask = mask.to(dev);
  }
  lay.tokens = i64(x.tokens);
  lay.positions = i64(x.positions);
  lay.slot_mapping = i64(x.slot_mapping);
  lay.kv_slots = i64(x.kv_slots);
  lay.logits_index = i64(x.logits_index);
  return lay;
}

// Clears a flag when a step ends, by return or by exception.
struct StepGuard {
  bool& flag;
  explicit StepGuard(bool& f) : flag(f) { flag = true; }
  ~StepGuard() { flag = false; }
};

}  // namespace

Engine::Engine(std::shared_ptr<const model::LlamaModel> model,
               std::shared_ptr<const tok::Tokenizer> tok, EngineOptions opts)
    : model_(std::move(model)), tok_(std::move(tok)), opts_(opts) {
  const auto& c = model_->config();
  if (opts_.context <= 0) opts_.context = c.max_position;
  SLLM_CHECK(opts_.max_seqs > 0 && opts_.block_size > 0 && opts_.max_step_tokens > 0,
             "engine options must be positive (max_seqs {}, block_size {}, max_step_tokens {})",
             opts_.max_seqs, opts_.block_size, opts_.max_step_tokens);
  // Admission takes what a request needs now, so one context-length pool serves many short
  // requests; one that cannot grow for want of blocks preempts another.
  if (opts_.kv_tokens <= 0) opts_.kv_tokens = opts_.context;
  SLLM_CHECK(opts_.kv_tokens >= opts_.context,
             "KV cache of {} tokens cannot hold one sequence of the {}-token context",
             opts_.kv_tokens, opts_.context);
  kv::KvCacheSpec spec{c.num_layers, c.num_kv_heads, c.head_dim,
                       kv::BlockManager::blocks_needed(opts_.kv_tokens, opts_.block_size),
                       opts_.block_size};
  cache_ = std::make_unique<kv::KvCache>(spec, model_->dtype(), model_->device());
  if (opts_.prefix_caching) cache_->manager().enable_prefix_caching();
  sched_ = std::make_unique<Scheduler>(SchedulerLimits{opts_.max_seqs, opts_.max_step_tokens},
                                       cache_->manager());
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
  SLLM_CHECK(req.logprobs >= -1 && req.logprobs <= kMaxTopLogprobs,
             "logprobs must be -1 (off) or the number of alternatives in [0, {}], got {}",
             kMaxTopLogprobs, req.logprobs);
  for (int32_t t : req.prompt)
    SLLM_CHECK(t >= 0 && t < model_->config().vocab_size, "token id {} is outside the vocabulary",
               t);
  if (req.adapter != 0) {
    int32_t served = 0;
    for (const auto& L : model_->layers())
      for (const auto& [name, l] : L.linears())
        for (const auto& a : l.lora) served = std::max(served, a.served_id);
    SLLM_CHECK(req.adapter > 0 && req.adapter <= served,
               "adapter {} is not served: the model has served adapters 1..{}", req.adapter,
               served);
  }
  auto s = std::make_unique<Sequence>(std::move(req));
  s->st.id = next_id_++;
  s->st.tokens = s->req.prompt;
  s->st.cache_salt = s->req.adapter;  // another adapter's K/V differ for the same tokens
  s->prompt_len = n;
  s->max_new = std::min<int64_t>(s->req.params.max_new_tokens, opts_.context - n);
  s->decoder = std::make_unique<tok::StreamDecoder>(*tok_, /*skip_special=*/true);
  for (const auto& st : s->req.params.stop) s->max_stop_len = std::max(s->max_stop_len, st.size());
  sched_->enqueue(&s->st, n + s->max_new);
  live_[s->st.id] = std::move(s);
  return next_id_ - 1;
}

bool Engine::cancel(int64_t id) {
  if (done_.count(id)) return false;
  auto it = live_.find(id);
  SLLM_CHECK(it != live_.end(),
             "cannot cancel request {}: it was never submitted or its result was already taken",
             id);
  Sequence& s = *it->second;
  if (s.finishing) return false;
  if (in_step_) {  // the step is iterating over its sequences: finish it when the step ends
    if (!s.cancelled) cancels_.push_back(id);
    s.cancelled = true;
    return true;
  }
  finish(s, FinishReason::cancelled);
  return true;
}

Engine::Sequence& Engine::sequence(const SeqState* st) { return *live_.at(st->id); }

at::Tensor forward_layout(const model::LlamaModel& m, kv::KvCache& cache, const LayoutIndices& x) {
  const model::BatchLayout lay = to_batch_layout(x, m.device());
  at::NoGradGuard no_grad;
  return m.forward_step(lay, cache).to(at::kCPU).contiguous();
}

void Engine::replace_model(std::shared_ptr<const model::LlamaModel> m) {
  SLLM_CHECK(!in_step_, "the model cannot change during a step");
  const auto &a = model_->config(), &b = m->config();
  SLLM_CHECK(a.num_layers == b.num_layers && a.hidden_size == b.hidden_size &&
                 a.vocab_size == b.vocab_size && a.num_kv_heads == b.num_kv_heads &&
                 a.head_dim == b.head_dim && m->dtype() == model_->dtype() &&
                 m->device() == model_->device(),
             "the replacement model's shape, dtype or device differs from the running one's");
  model_ = std::move(m);
}

at::Tensor Engine::forward(const LayoutIndices& x) { return forward_layout(*model_, *cache_, x); }

at::Tensor Engine::forward_with_adapters(const std::vector<Chunk>& chunks, const LayoutIndices& x) {
  // The token rows of each served adapter: chunks are laid out in order.
  std::vector<std::vector<int64_t>> rows;
  int64_t at = 0;
  for (const auto& c : chunks) {
    const auto k = static_cast<size_t>(sequence(c.seq).req.adapter);
    if (k > 0) {
      if (rows.size() <= k) rows.resize(k + 1);
      for (int64_t i = 0; i < c.n; ++i) rows[k].push_back(at + i);
    }
    at += c.n;
  }
  if (rows.empty()) return forward(x);
  std::vector<at::Tensor> idx(rows.size());
  for (size_t k = 1; k < rows.size(); ++k)
    if (!rows[k].empty()) idx[k] = at::tensor(rows[k], at::kLong).to(model_->device());
  model::ServedAdapterRows scope(std::move(idx));
  return forward(x);
}

bool Engine::step() {
  Timer t;
  if (drafter_) propose();
  StepPlan plan = sched_->schedule();
  for (SeqState* st : plan.preempted) preempted(sequence(st));
  for (SeqState* st : plan.admitted) {
    Sequence& s = sequence(st);
    if (!s.started) s.timer.reset();
    s.started = true;
  }
  const SchedulerStats& ss = sched_->stats();
  stats_.preemptions = ss.preemptions;
  stats_.prefix_cache_queries = ss.prefix_queries;
  stats_.prefix_cache_hits = ss.prefix_hits;
  if (plan.chunks.empty()) return !sched_->idle();
  {
    StepGuard guard(in_step_);
    cache_->apply(plan.copies);
    const LayoutIndices x = build_layout(plan.chunks, cache_->manager());
    // A step of decoding sequences only (with or without drafts) counts as decode.
    const bool decode = std::all_of(plan.chunks.begin(), plan.chunks.end(),
                                    [](const Chunk& c) { return c.seq->decoding(); });
    const at::Tensor logits = forward_with_adapters(plan.chunks, x);
    for (const auto& c : plan.chunks) c.seq->computed += c.n;
    rejected_ = 0;
    sample(plan.chunks, logits);
    stats_.steps++;
    const double secs = t.seconds();
    if (decode) {
      stats_.decode_tokens += x.num_tokens() - rejected_;
      stats_.decode_s += secs;
    } else {
      stats_.prefill_tokens += x.num_tokens();
      stats_.prefill_s += secs;
    }
  }
  auto cancels = std::move(cancels_);
  cancels_.clear();
  for (int64_t id : cancels)
    if (auto it = live_.find(id); it != live_.end()) finish(*it->second, FinishReason::cancelled);
  return !sched_->idle();
}

void Engine::preempted(Sequence& s) {
  // Its tokens (with any drafts and their distributions), sampler and streamed text stay: the
  // re-prefill ends at the same position with the same logits, so nothing is drawn or emitted
  // twice. A draft model's cache of it is rebuilt when it drafts again.
  if (drafter_) drafter_->release(s.st.id);
  log::debug("request {} preempted at {} tokens: the KV cache is full; it will be recomputed",
             s.st.id, s.st.length() - s.st.draft);
}

const SeqState* Engine::state(int64_t id) const {
  auto it = live_.find(id);
  return it == live_.end() ? nullptr : &it->second->st;
}

int64_t Engine::num_running() const { return static_cast<int64_t>(sched_->running().size()); }
int64_t Engine::num_waiting() const { return sched_->num_waiting(); }

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
