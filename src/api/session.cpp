// Session: the public face of engine::Engine (continuous batching over the paged KV cache).
#include "sllm/session.h"

#include <ATen/core/grad_mode.h>

#include <set>

#include "api/impl.h"
#include "apps/common.h"
#include "core/error.h"
#include "engine/engine.h"
#include "tokenizer/chat_template.h"

namespace sllm {

struct Session::Impl {
  std::shared_ptr<const tok::Tokenizer> tok;
  std::unique_ptr<engine::Engine> engine;  // holds the model's weights alive
  std::set<int64_t> to_cancel;             // asked for by on_text during a step; cancelled after it
};

namespace {

engine::SamplingParams to_params(const SamplingOptions& s) {
  engine::SamplingParams p;
  p.temperature = s.temperature;
  p.top_k = s.top_k;
  p.top_p = s.top_p;
  p.min_p = s.min_p;
  p.repetition_penalty = s.repetition_penalty;
  p.seed = s.seed;
  p.max_new_tokens = s.max_new_tokens;
  p.stop = s.stop;
  p.ignore_eos = s.ignore_eos;
  p.validate();
  return p;
}

std::vector<int32_t> prompt_ids(const tok::Tokenizer& t, const GenerationRequest& r) {
  if (!r.messages.empty()) {
    SLLM_CHECK(r.prompt.empty(), "GenerationRequest: give a prompt or messages, not both");
    SLLM_CHECK(!t.chat_template.empty(),
               "GenerationRequest: messages need a chat template and this model has none");
    std::vector<tok::ChatMessage> msgs;
    for (const auto& m : r.messages) msgs.push_back({m.role, m.content});
    return apps::encode_chat(t, tok::detect_chat_template(t), msgs);
  }
  return apps::encode_prompt(t, r.prompt, r.chat_template, r.system);
}

Generation to_generation(engine::Result r) {
  Generation g;
  g.text = std::move(r.text);
  g.tokens = std::move(r.tokens);
  g.finish_reason = engine::to_string(r.finish_reason);
  g.prompt_tokens = r.prompt_tokens;
  g.first_token_ms = r.first_token_ms;
  g.total_ms = r.total_ms;
  return g;
}

}  // namespace

Session::Session(const Model& model, const SessionOptions& o) : impl_(std::make_unique<Impl>()) {
  const auto& loaded = model.impl().loaded;
  engine::EngineOptions e;
  e.context = o.context;
  e.kv_tokens = o.kv_tokens;
  e.block_size = o.block_size;
  e.max_seqs = o.max_seqs;
  e.max_step_tokens = o.max_step_tokens;
  SLLM_CHECK(e.block_size > 0 && e.max_seqs > 0 && e.max_step_tokens > 0 && e.context >= 0 &&
                 e.kv_tokens >= 0,
             "SessionOptions: block_size, max_seqs and max_step_tokens must be > 0, context and "
             "kv_tokens >= 0");
  impl_->tok = loaded.tokenizer;
  impl_->engine = std::make_unique<engine::Engine>(loaded.model, loaded.tokenizer, e);
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

int64_t Session::submit(GenerationRequest request) {
  engine::Request r;
  r.prompt = prompt_ids(*impl_->tok, request);
  r.params = to_params(request.sampling);
  if (request.on_text) {
    // The engine assigns ids in submission order; the callback learns its id after submit.
    auto id = std::make_shared<int64_t>(-1);
    auto cb = std::move(request.on_text);
    Impl* impl = impl_.get();
    r.on_text = [cb = std::move(cb), id, impl](const std::string& s) {
      if (*id >= 0 && !impl->to_cancel.count(*id) && !cb(s)) impl->to_cancel.insert(*id);
    };
    *id = impl_->engine->submit(std::move(r));
    return *id;
  }
  return impl_->engine->submit(std::move(r));
}

bool Session::step() {
  at::NoGradGuard no_grad;
  const bool more = impl_->engine->step();
  for (const auto id : impl_->to_cancel)
    if (!impl_->engine->finished(id)) impl_->engine->cancel(id);
  impl_->to_cancel.clear();
  return more;
}

bool Session::finished(int64_t id) const { return impl_->engine->finished(id); }

Generation Session::take(int64_t id) { return to_generation(impl_->engine->take_result(id)); }

void Session::cancel(int64_t id) { impl_->engine->cancel(id); }

std::vector<Generation> Session::generate(std::vector<GenerationRequest> requests) {
  std::vector<int64_t> ids;
  for (auto& r : requests) ids.push_back(submit(std::move(r)));
  while (step()) {
  }
  std::vector<Generation> out;
  for (const auto id : ids) out.push_back(take(id));
  return out;
}

Generation Session::generate(GenerationRequest request) {
  std::vector<GenerationRequest> one;
  one.push_back(std::move(request));
  return std::move(generate(std::move(one)).front());
}

}  // namespace sllm
