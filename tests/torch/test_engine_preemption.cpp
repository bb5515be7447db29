// Preemption by recompute and prefix caching in the engine, on tiny random models: with a KV
// pool too small for the batch, every request's output (greedy, seeded sampling, speculative)
// equals the request run alone; a cached prompt prefix is shared and changes nothing.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "engine/engine.h"
#include "tiny_model.h"

using namespace sllm;

namespace {

std::vector<int32_t> tokens(int len, uint64_t seed) { return fixtures::lcg_tokens(len, seed, 256); }

// What the callbacks saw.
struct Stream {
  std::string text;
  std::vector<int32_t> tokens, logprob_tokens;
};

engine::Request request(std::vector<int32_t> prompt, int n, Stream* out, double temperature = 0,
                        uint64_t seed = 42) {
  engine::Request r;
  r.prompt = std::move(prompt);
  r.params.temperature = temperature;
  r.params.top_p = temperature > 0 ? 0.95 : 1.0;
  r.params.repetition_penalty = 1.1;  // depends on the history a recomputation must keep
  r.params.seed = seed;
  r.params.max_new_tokens = n;
  r.params.ignore_eos = true;
  r.logprobs = 2;
  r.on_text = [out](const std::string& s) { out->text += s; };
  r.on_token = [out](int32_t t) { out->tokens.push_back(t); };
  r.on_logprob = [out](const engine::TokenLogprob& lp) { out->logprob_tokens.push_back(lp.token); };
  return r;
}

void expect_same(const engine::Result& got, const Stream& got_s, const engine::Result& want,
                 const Stream& want_s, const std::string& what) {
  EXPECT_EQ(got.tokens, want.tokens) << what;
  EXPECT_EQ(got.text, want.text) << what;
  EXPECT_EQ(got.finish_reason, want.finish_reason) << what;
  // Streamed once: nothing emitted again after a recomputation.
  EXPECT_EQ(got_s.text, want_s.text) << what;
  EXPECT_EQ(got_s.tokens, want_s.tokens) << what;
  EXPECT_EQ(got_s.logprob_tokens, want_s.logprob_tokens) << what;
  ASSERT_EQ(got.logprobs.size(), want.logprobs.size()) << what;
  for (size_t i = 0; i < got.logprobs.size(); ++i) {
    EXPECT_NEAR(got.logprobs[i].logprob, want.logprobs[i].logprob, 1e-4) << what << " " << i;
    ASSERT_EQ(got.logprobs[i].top.size(), want.logprobs[i].top.size());
    for (size_t j = 0; j < got.logprobs[i].top.size(); ++j)
      EXPECT_EQ(got.logprobs[i].top[j].first, want.logprobs[i].top[j].first) << what << " " << i;
  }
}

struct Fixture {
  model::ModelConfig c = fixtures::tiny_config(2, false, /*tied=*/false);
  std::shared_ptr<model::LlamaModel> m = fixtures::tiny_model(c, 5);
  std::shared_ptr<tok::Tokenizer> tok = fixtures::tiny_tokenizer();

  // 16 blocks of 4 tokens: one 64-token context, far less than the batch grows to.
  static engine::EngineOptions small_pool(bool prefix_caching) {
    engine::EngineOptions o;
    o.context = 64;
    o.kv_tokens = 64;
    o.block_size = 4;
    o.max_seqs = 8;
    o.max_step_tokens = 48;
    o.prefix_caching = prefix_caching;
    return o;
  }
};

struct Case {
  std::vector<int32_t> prompt;
  int n = 0;
  double temperature = 0;
  uint64_t seed = 42;
};

// Runs the cases batched in one engine (speculative if so is given) and each alone in a plain
// engine with a pool of its own; the results and streams must be equal. Returns the batched
// engine's stats.
engine::EngineStats expect_as_alone(const Fixture& f, const std::vector<Case>& cases,
                                    bool prefix_caching,
                                    const engine::SpeculativeOptions* so = nullptr) {
  std::vector<Stream> alone_s(cases.size()), batch_s(cases.size());
  std::vector<engine::Result> alone;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    engine::Engine e(f.m, f.tok, Fixture::small_pool(false));
    alone.push_back(e.generate({request(k.prompt, k.n, &alone_s[i], k.temperature, k.seed)})[0]);
    EXPECT_EQ(e.stats().preemptions, 0);
  }
  engine::Engine batched(f.m, f.tok, Fixture::small_pool(prefix_caching));
  if (so) batched.enable_speculation(*so);
  std::vector<engine::Request> reqs;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    reqs.push_back(request(k.prompt, k.n, &batch_s[i], k.temperature, k.seed));
  }
  const auto got = batched.generate(std::move(reqs));
  for (size_t i = 0; i < cases.size(); ++i)
    expect_same(got[i], batch_s[i], alone[i], alone_s[i], "request " + std::to_string(i));
  EXPECT_EQ(batched.cache().manager().stats().used_blocks, 0);
  EXPECT_GT(batched.stats().preemptions, 0);
  return batched.stats();
}

std::vector<Case> cases(double temperature) {
  std::vector<Case> out;
  for (int i = 0; i < 7; ++i)
    out.push_back({tokens(5 + 4 * i, 10 + i), 30 - 2 * i, temperature, 1000 + uint64_t(i)});
  return out;
}

class Preemption : public ::testing::TestWithParam<bool> {};  // prefix caching on / off

TEST_P(Preemption, GreedyEqualsAlone) { expect_as_alone(Fixture{}, cases(0), GetParam()); }

TEST_P(Preemption, SeededSamplingEqualsAlone) {
  expect_as_alone(Fixture{}, cases(0.9), GetParam());
}

TEST_P(Preemption, NgramSpeculativeEqualsAlone) {
  std::vector<Case> cs;
  for (int i = 0; i < 7; ++i) cs.push_back({fixtures::repetitive_prompt(i), 28 - i});
  engine::SpeculativeOptions so;
  so.num_tokens = 3;
  const auto st = expect_as_alone(Fixture{}, cs, GetParam(), &so);
  EXPECT_GT(st.draft_proposed, 0);
}

TEST_P(Preemption, DraftModelSpeculativeEqualsAlone) {
  Fixture f;
  std::vector<Case> cs;
  for (int i = 0; i < 7; ++i) cs.push_back({fixtures::repetitive_prompt(i), 28 - i});
  engine::SpeculativeOptions so;
  so.num_tokens = 4;
  so.draft_model = fixtures::tiny_model(f.c, 99);  // a poor draft: rejections too
  so.draft_tokenizer = f.tok;
  const auto st = expect_as_alone(f, cs, GetParam(), &so);
  EXPECT_GT(st.draft_proposed, st.draft_accepted);
}

INSTANTIATE_TEST_SUITE_P(Engine, Preemption, ::testing::Bool());

TEST(PrefixCaching, SharedPrefixIsAHitAndChangesNothing) {
  Fixture f;
  engine::EngineOptions o;
  o.block_size = 8;
  o.context = 128;
  const auto prefix = tokens(40, 7);
  auto with_tail = [&](uint64_t seed) {
    auto p = prefix;
    const auto t = tokens(5, seed);
    p.insert(p.end(), t.begin(), t.end());
    return p;
  };
  // The second prompt shares 40 tokens (5 blocks) with the first; the third continues the
  // first's whole conversation (a chat's next turn), whose generated blocks were cached too.
  std::vector<std::vector<int32_t>> prompts = {with_tail(1), with_tail(2)};
  std::vector<engine::Result> on, off;
  std::vector<Stream> on_s(3), off_s(3);
  o.prefix_caching = true;
  engine::Engine cached(f.m, f.tok, o);
  o.prefix_caching = false;
  engine::Engine plain(f.m, f.tok, o);
  for (int i = 0; i < 3; ++i) {
    if (i == 2) {
      auto p = prompts[0];
      p.insert(p.end(), on[0].tokens.begin(), on[0].tokens.end());
      prompts.push_back(p);
    }
    on.push_back(cached.generate({request(prompts[i], 12, &on_s[i])})[0]);
    off.push_back(plain.generate({request(prompts[i], 12, &off_s[i])})[0]);
    expect_same(on[i], on_s[i], off[i], off_s[i], "prompt " + std::to_string(i));
  }
  const auto& st = cached.stats();
  // 45 tokens (no hit), 45 (40 hit), 57 (56 computed by the first request: 7 blocks).
  EXPECT_EQ(st.prefix_cache_queries, 45 + 45 + 57);
  EXPECT_EQ(st.prefix_cache_hits, 40 + 56);
  EXPECT_NEAR(st.prefix_cache_hit_rate(), 96.0 / 147.0, 1e-12);
  EXPECT_EQ(plain.stats().prefix_cache_queries, 0);
  EXPECT_EQ(plain.stats().prefix_cache_hits, 0);
  // The cached engine computed fewer tokens for the same outputs.
  const auto computed = [](const engine::EngineStats& s) {
    return s.prefill_tokens + s.decode_tokens;
  };
  EXPECT_EQ(computed(plain.stats()) - computed(cached.stats()), 96);
  EXPECT_EQ(cached.cache().manager().stats().used_blocks, 0);
  EXPECT_GT(cached.cache().manager().stats().cached_blocks, 0);
}

}  // namespace
