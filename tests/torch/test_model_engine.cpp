// Decoder forwards and the batched engine on tiny random models.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <utility>

#include "core/error.h"
#include "engine/engine.h"
#include "kv/kv_cache.h"
#include "quant/intq.h"
#include "tiny_model.h"

using namespace sllm;

namespace {

// Greedy continuation recomputed from scratch with the full (no-cache) forward.
std::vector<int32_t> greedy_reference(const model::LlamaModel& m, std::vector<int32_t> ids, int n) {
  at::NoGradGuard g;
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    std::vector<int64_t> v(ids.begin(), ids.end());
    auto logits = m.forward_full(at::tensor(v, at::kLong).unsqueeze(0));
    const int32_t next = static_cast<int32_t>(logits[0][-1].argmax().item<int64_t>());
    out.push_back(next);
    ids.push_back(next);
  }
  return out;
}

engine::Request greedy_request(std::vector<int32_t> prompt, int n) {
  engine::Request r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_new_tokens = n;
  r.params.ignore_eos = true;
  return r;
}

std::vector<int32_t> random_prompt(int len, uint64_t seed) {
  std::vector<int32_t> p;
  uint64_t x = seed * 2654435761u + 1;
  for (int i = 0; i < len; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    p.push_back(static_cast<int32_t>((x >> 33) % 256));
  }
  return p;
}

class ModelVariants : public ::testing::TestWithParam<std::tuple<int64_t, bool, bool>> {};

TEST_P(ModelVariants, StepPrefillMatchesFullForward) {
  auto [kv_heads, bias, tied] = GetParam();
  auto m = fixtures::tiny_model(fixtures::tiny_config(kv_heads, bias, tied));
  const auto& c = m->config();
  kv::KvCache cache({c.num_layers, c.num_kv_heads, c.head_dim, 8, 16}, at::kFloat, at::kCPU);
  auto s = cache.manager().add_sequence();
  const int64_t T = 21;
  cache.manager().append(s, T);
  auto ids = at::randint(0, 256, {T}, at::kLong);
  model::BatchLayout lay;
  lay.tokens = ids;
  lay.positions = at::arange(T, at::kLong);
  lay.slot_mapping = at::empty({T}, at::kLong);
  cache.manager().slots(s, 0, T, lay.slot_mapping.data_ptr<int64_t>());
  lay.kv_slots = lay.slot_mapping.clone();
  lay.num_seqs = 1;
  lay.max_q = T;
  lay.max_kv = T;
  lay.attn_mask = at::full({T, T}, -INFINITY).triu(1).view({1, 1, T, T});
  lay.logits_index = at::arange(T, at::kLong);
  at::NoGradGuard g;
  auto step = m->forward_step(lay, cache);
  auto full = m->forward_full(ids.unsqueeze(0))[0];
  EXPECT_TRUE(at::allclose(step, full, 1e-4, 1e-5)) << (step - full).abs().max().item<float>();
}

TEST_P(ModelVariants, EngineGreedyMatchesRecomputation) {
  auto [kv_heads, bias, tied] = GetParam();
  auto m = fixtures::tiny_model(fixtures::tiny_config(kv_heads, bias, tied), 3);
  engine::EngineOptions o;
  o.max_step_tokens = 7;  // forces chunked prefill
  engine::Engine eng(m, fixtures::tiny_tokenizer(), o);
  auto prompt = random_prompt(19, 5);
  auto res = eng.generate({greedy_request(prompt, 12)});
  EXPECT_EQ(res[0].tokens, greedy_reference(*m, prompt, 12));
  EXPECT_EQ(res[0].finish_reason, engine::FinishReason::length);
}

INSTANTIATE_TEST_SUITE_P(Model, ModelVariants,
                         ::testing::Values(std::make_tuple(2, false, true),  // GQA
                                           std::make_tuple(1, false, true),  // MQA
                                           std::make_tuple(4, true, false),  // MHA, bias, untied
                                           std::make_tuple(2, true, true)));

TEST(ModelEngine, BatchedEqualsAlone) {
  auto m = fixtures::tiny_model(fixtures::tiny_config(), 11);
  auto tok = fixtures::tiny_tokenizer();
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(random_prompt(3 + 5 * i, 100 + i));
  std::vector<engine::Request> reqs;
  for (auto& p : prompts) reqs.push_back(greedy_request(p, 10 + static_cast<int>(p.size() % 7)));
  engine::EngineOptions o;
  o.max_step_tokens = 64;
  engine::Engine batched(m, tok, o);
  auto together = batched.generate(std::move(reqs));
  for (size_t i = 0; i < prompts.size(); ++i) {
    engine::Engine alone(m, tok, o);
    auto r =
        alone.generate({greedy_request(prompts[i], 10 + static_cast<int>(prompts[i].size() % 7))});
    EXPECT_EQ(together[i].tokens, r[0].tokens) << "prompt " << i;
  }
  EXPECT_EQ(batched.cache().manager().stats().used_blocks, 0);
  EXPECT_GT(batched.cache().manager().stats().peak_used_blocks, 0);
}

TEST(ModelEngine, StopStringAndLength) {
  auto m = fixtures::tiny_model(fixtures::tiny_config(), 2);
  auto tok = fixtures::tiny_tokenizer();
  auto prompt = random_prompt(9, 1);
  engine::Engine eng(m, tok);
  auto free_run = eng.generate({greedy_request(prompt, 16)})[0];
  ASSERT_EQ(free_run.tokens.size(), 16u);
  // Stop on two characters from the middle of the free-running text.
  const std::string& text = free_run.text;
  size_t a = text.size() / 2;
  while (a > 0 && (static_cast<uint8_t>(text[a]) & 0xC0) == 0x80) --a;
  size_t b = a + 1;
  while (b < text.size() && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) ++b;
  const std::string stop = text.substr(a, b - a);
  ASSERT_FALSE(stop.empty());
  auto r = greedy_request(prompt, 16);
  r.params.stop = {stop};
  std::string streamed;
  r.on_text = [&](const std::string& s) { streamed += s; };
  auto stopped = eng.generate({std::move(r)})[0];
  EXPECT_EQ(stopped.finish_reason, engine::FinishReason::stop_string);
  EXPECT_EQ(engine::to_string(stopped.finish_reason), "stop");
  EXPECT_EQ(stopped.text, text.substr(0, text.find(stop)));
  EXPECT_EQ(streamed, stopped.text);
}

// Each token's log-probability and top alternatives are log_softmax of the raw logits (a full
// forward over prompt + generated tokens), whatever penalties and temperature sampled it.
void expect_raw_logprobs(const model::LlamaModel& m, const std::vector<int32_t>& prompt,
                         const engine::Result& r, int32_t n) {
  at::NoGradGuard g;
  std::vector<int64_t> ids(prompt.begin(), prompt.end());
  ids.insert(ids.end(), r.tokens.begin(), r.tokens.end());
  const auto ref = at::log_softmax(
      m.forward_full(at::tensor(ids, at::kLong).unsqueeze(0))[0].to(at::kDouble), -1);
  ASSERT_EQ(r.logprobs.size(), r.tokens.size());
  for (size_t i = 0; i < r.tokens.size(); ++i) {
    const auto row = ref[static_cast<int64_t>(prompt.size() + i) - 1];
    const auto& lp = r.logprobs[i];
    EXPECT_EQ(lp.token, r.tokens[i]);
    EXPECT_NEAR(lp.logprob, row[lp.token].item<double>(), 1e-4) << "token " << i;
    ASSERT_EQ(lp.top.size(), static_cast<size_t>(n));
    const auto best = std::get<0>(row.topk(n));
    for (int32_t j = 0; j < n; ++j) {
      EXPECT_NEAR(lp.top[j].second, best[j].item<double>(), 1e-4) << i << " " << j;
      EXPECT_NEAR(lp.top[j].second, row[lp.top[j].first].item<double>(), 1e-4) << i << " " << j;
    }
  }
}

TEST(ModelEngine, LogprobsAreTheRawLogSoftmax) {
  auto m = fixtures::tiny_model(fixtures::tiny_config(), 4);
  engine::Engine eng(m, fixtures::tiny_tokenizer());
  const auto prompt = random_prompt(11, 7);
  auto greedy = greedy_request(prompt, 8);
  greedy.logprobs = 4;
  std::vector<int32_t> streamed;
  greedy.on_logprob = [&](const engine::TokenLogprob& lp) { streamed.push_back(lp.token); };
  auto sampled = greedy_request(prompt, 8);
  sampled.logprobs = 3;
  sampled.params.temperature = 0.7;
  sampled.params.top_k = 5;
  sampled.params.repetition_penalty = 1.5;
  sampled.params.presence_penalty = 1;
  auto res = eng.generate({std::move(greedy), std::move(sampled), greedy_request(prompt, 8)});
  expect_raw_logprobs(*m, prompt, res[0], 4);
  expect_raw_logprobs(*m, prompt, res[1], 3);
  EXPECT_EQ(streamed, res[0].tokens);
  for (const auto& lp : res[0].logprobs) EXPECT_EQ(lp.top[0].first, lp.token);  // the argmax
  EXPECT_TRUE(res[2].logprobs.empty());                                         // not asked for
  auto bad = greedy_request(prompt, 2);
  bad.logprobs = engine::kMaxTopLogprobs + 1;
  EXPECT_THROW(eng.submit(bad), Error);
  bad.logprobs = -2;
  EXPECT_THROW(eng.submit(bad), Error);
}

TEST(ModelEngine, BadRequestsAreErrors) {
  auto m = fixtures::tiny_model(fixtures::tiny_config());
  engine::EngineOptions o;
  o.context = 32;
  engine::Engine eng(m, fixtures::tiny_tokenizer(), o);
  EXPECT_THROW(eng.submit(greedy_request({}, 4)), Error);
  EXPECT_THROW(eng.submit(greedy_request(random_prompt(40, 1), 4)), Error);
  auto r = greedy_request(random_prompt(4, 1), 4);
  r.params.top_p = 0;
  EXPECT_THROW(eng.submit(r), Error);
  // A prompt near the context end is cut at the context with finish_reason "length".
  auto near = eng.generate({greedy_request(random_prompt(28, 2), 100)})[0];
  EXPECT_EQ(near.tokens.size(), 4u);
  EXPECT_EQ(near.finish_reason, engine::FinishReason::length);
  EXPECT_THROW(eng.cancel(12345), Error);  // never submitted
}

TEST(ModelEngine, FinishReasonNames) {
  EXPECT_EQ(engine::to_string(engine::FinishReason::stop), "stop");
  EXPECT_EQ(engine::to_string(engine::FinishReason::stop_string), "stop");
  EXPECT_EQ(engine::to_string(engine::FinishReason::length), "length");
  EXPECT_EQ(engine::to_string(engine::FinishReason::cancelled), "cancelled");
}

// Requests of different lengths; the reference run has no cancellation.
struct CancelCase {
  std::shared_ptr<model::LlamaModel> m = fixtures::tiny_model(fixtures::tiny_config(), 21);
  std::shared_ptr<tok::Tokenizer> tok = fixtures::tiny_tokenizer();
  engine::EngineOptions opts;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<engine::Result> reference;

  CancelCase() {
    opts.max_step_tokens = 24;
    opts.max_seqs = 3;
    opts.block_size = 4;
    for (int i = 0; i < 5; ++i) prompts.push_back(random_prompt(4 + 6 * i, 300 + i));
    engine::Engine eng(m, tok, opts);
    reference = eng.generate(requests());
  }
  std::vector<engine::Request> requests() const {
    std::vector<engine::Request> r;
    for (const auto& p : prompts) r.push_back(greedy_request(p, 12));
    return r;
  }
};

TEST(ModelEngine, CancelRunningRequest) {
  CancelCase c;
  engine::Engine eng(c.m, c.tok, c.opts);
  std::vector<int64_t> ids;
  std::string streamed;
  auto reqs = c.requests();
  reqs[1].on_text = [&](const std::string& s) { streamed += s; };
  for (auto& r : reqs) ids.push_back(eng.submit(std::move(r)));
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(eng.step());
  ASSERT_FALSE(eng.finished(ids[1]));
  const auto& mgr = eng.cache().manager();
  const int32_t used = mgr.stats().used_blocks;
  EXPECT_TRUE(eng.cancel(ids[1]));
  ASSERT_TRUE(eng.finished(ids[1]));
  EXPECT_FALSE(eng.cancel(ids[1]));  // already finished
  auto cancelled = eng.take_result(ids[1]);
  EXPECT_EQ(cancelled.finish_reason, engine::FinishReason::cancelled);
  ASSERT_FALSE(cancelled.tokens.empty());
  ASSERT_LT(cancelled.tokens.size(), c.reference[1].tokens.size());
  const auto& ref = c.reference[1].tokens;
  EXPECT_EQ(cancelled.tokens,
            std::vector<int32_t>(ref.begin(), ref.begin() + cancelled.tokens.size()));
  EXPECT_EQ(streamed, cancelled.text);
  EXPECT_EQ(cancelled.prompt_tokens, static_cast<int64_t>(c.prompts[1].size()));
  // Its cached tokens (the prompt and all but the last sampled token) freed their blocks.
  const int64_t cached = c.prompts[1].size() + cancelled.tokens.size() - 1;
  EXPECT_EQ(mgr.stats().used_blocks,
            used - kv::BlockManager::blocks_needed(cached, c.opts.block_size));
  while (eng.step()) {
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i == 1) continue;
    auto r = eng.take_result(ids[i]);
    EXPECT_EQ(r.tokens, c.reference[i].tokens) << "request " << i;
    EXPECT_EQ(r.text, c.reference[i].text) << "request " << i;
    EXPECT_EQ(r.finish_reason, engine::FinishReason::length);
  }
  EXPECT_EQ(mgr.stats().used_blocks, 0);
  EXPECT_EQ(mgr.num_free_blocks(), mgr.num_blocks());
}

// on_token sees every generated id before its text; the running/waiting counts follow the
// scheduler.
TEST(ModelEngine, TokenCallbackAndQueueCounts) {
  CancelCase c;
  engine::Engine eng(c.m, c.tok, c.opts);
  std::vector<int32_t> seen;
  auto reqs = c.requests();
  reqs[0].on_token = [&](int32_t t) { seen.push_back(t); };
  std::vector<int64_t> ids;
  for (auto& r : reqs) ids.push_back(eng.submit(std::move(r)));
  EXPECT_EQ(eng.num_running(), 0);
  EXPECT_EQ(eng.num_waiting(), 5);
  ASSERT_TRUE(eng.step());
  EXPECT_EQ(eng.num_running(), 3);  // max_seqs 3
  EXPECT_EQ(eng.num_waiting(), 2);
  while (eng.step()) {
  }
  EXPECT_EQ(eng.num_running(), 0);
  EXPECT_EQ(eng.num_waiting(), 0);
  EXPECT_EQ(seen, c.reference[0].tokens);
  EXPECT_EQ(eng.take_result(ids[0]).tokens, seen);
}

TEST(ModelEngine, CancelQueuedRequest) {
  CancelCase c;
  engine::Engine eng(c.m, c.tok, c.opts);
  std::vector<int64_t> ids;
  for (auto& r : c.requests()) ids.push_back(eng.submit(std::move(r)));
  ASSERT_TRUE(eng.step());  // max_seqs 3: the last two wait
  EXPECT_TRUE(eng.cancel(ids[4]));
  auto q = eng.take_result(ids[4]);
  EXPECT_EQ(q.finish_reason, engine::FinishReason::cancelled);
  EXPECT_TRUE(q.tokens.empty());
  EXPECT_TRUE(q.text.empty());
  while (eng.step()) {
  }
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(eng.take_result(ids[i]).tokens, c.reference[i].tokens) << "request " << i;
  EXPECT_EQ(eng.cache().manager().stats().used_blocks, 0);
}

TEST(ModelEngine, CancelFromCallback) {
  CancelCase c;
  engine::Engine eng(c.m, c.tok, c.opts);
  auto reqs = c.requests();
  std::vector<int64_t> ids(reqs.size());
  // Request 0 cancels request 2 and itself once it has streamed 3 bytes.
  std::string streamed;
  reqs[0].on_text = [&](const std::string& s) {
    streamed += s;
    if (streamed.size() >= 3) {
      eng.cancel(ids[2]);
      eng.cancel(ids[0]);
    }
  };
  for (size_t i = 0; i < reqs.size(); ++i) ids[i] = eng.submit(std::move(reqs[i]));
  while (eng.step()) {
  }
  auto r0 = eng.take_result(ids[0]);
  EXPECT_EQ(r0.finish_reason, engine::FinishReason::cancelled);
  EXPECT_EQ(r0.text, streamed);
  ASSERT_LT(r0.tokens.size(), c.reference[0].tokens.size());
  EXPECT_EQ(r0.tokens, std::vector<int32_t>(c.reference[0].tokens.begin(),
                                            c.reference[0].tokens.begin() + r0.tokens.size()));
  EXPECT_EQ(eng.take_result(ids[2]).finish_reason, engine::FinishReason::cancelled);
  for (size_t i : {1, 3, 4})
    EXPECT_EQ(eng.take_result(ids[i]).tokens, c.reference[i].tokens) << "request " << i;
  EXPECT_EQ(eng.cache().manager().stats().used_blocks, 0);
}

TEST(ModelEngine, Bf16CloseToFp32) {
  auto m = fixtures::tiny_model(fixtures::tiny_config(), 4);
  auto mb = m->to(at::kBFloat16, at::kCPU);
  auto ids = at::randint(0, 256, {1, 16}, at::kLong);
  at::NoGradGuard g;
  auto a = m->forward_full(ids), b = mb.forward_full(ids);
  EXPECT_LT((a - b).abs().max().item<float>(), 0.15f);
  EXPECT_EQ(b.scalar_type(), at::kFloat);
}

// DecoderLayer::linears() lists the layer's Linears in forward order, writable; a Linear's
// format accessors and to() follow its weight's format.
TEST(ModelEngine, LayerLinearsAndWeightFormats) {
  auto m = fixtures::tiny_model(fixtures::tiny_config(2, /*bias=*/true));
  model::DecoderLayer L = m->layers()[0];
  std::vector<std::string> names;
  std::vector<const model::Linear*> ptrs;
  for (const auto& [name, l] : std::as_const(L).linears()) {
    names.emplace_back(name);
    ptrs.push_back(&l);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"qkv", "o", "gate_up", "down"}));
  EXPECT_EQ(ptrs, (std::vector<const model::Linear*>{&L.qkv, &L.o, &L.gate_up, &L.down}));
  for (auto [name, l] : L.linears()) l.bias = at::ones({l.out_features()});
  EXPECT_TRUE(L.down.bias.defined());

  const auto& qkv = m->layers()[0].qkv;
  EXPECT_TRUE(qkv.is<model::DenseFormat>());
  EXPECT_EQ(qkv.kind(), "dense");
  EXPECT_EQ(qkv.get_if<model::IntQFormat>(), nullptr);
  try {
    (void)qkv.get<model::IntQFormat>();
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("intq"), std::string::npos) << what;
    EXPECT_NE(what.find(qkv.format_name()), std::string::npos) << what;
    EXPECT_NE(what.find("self_attn.q_proj"), std::string::npos) << what;
  }
  EXPECT_THROW((void)qkv.intq_part(0), Error);
  auto half = qkv.to(at::kCPU, at::kHalf);
  EXPECT_EQ(half.dense_weight().scalar_type(), at::kHalf);
  EXPECT_EQ(half.bias.scalar_type(), at::kHalf);
  EXPECT_EQ(qkv.dense_weight().scalar_type(), at::kFloat);  // the source is untouched
  EXPECT_TRUE(at::equal(half.dense_weight(), qkv.dense_weight().to(at::kHalf)));
}

}  // namespace
