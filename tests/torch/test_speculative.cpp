// Speculative decoding on tiny random models: greedy output identical to the target alone, the
// sampled distribution kept exactly, rollback of both KV caches, n-gram lookup, bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>
#include <string>

#include "core/error.h"
#include "engine/draft.h"
#include "engine/engine.h"
#include "engine/spec_sampling.h"
#include "tiny_model.h"

using namespace sllm;

namespace {

using fixtures::lcg_tokens;
using fixtures::repetitive_prompt;

struct Stream {
  std::string text;
  std::vector<int32_t> tokens;
};

engine::Request greedy(std::vector<int32_t> prompt, int n, Stream* out) {
  engine::Request r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_new_tokens = n;
  r.on_text = [out](const std::string& s) { out->text += s; };
  r.on_token = [out](int32_t t) { out->tokens.push_back(t); };
  return r;
}

// An untied output head: tied tiny random models mostly repeat their last token, which every
// draft would guess.
struct Fixture {
  model::ModelConfig c = fixtures::tiny_config(2, false, /*tied=*/false);
  std::shared_ptr<model::LlamaModel> target = fixtures::tiny_model(c, 3);
  std::shared_ptr<tok::Tokenizer> tok = fixtures::tiny_tokenizer();
};

engine::SpeculativeOptions draft_with(std::shared_ptr<const model::LlamaModel> m,
                                      std::shared_ptr<const tok::Tokenizer> t, int64_t k) {
  engine::SpeculativeOptions o;
  o.num_tokens = k;
  o.draft_model = std::move(m);
  o.draft_tokenizer = std::move(t);
  return o;
}

engine::SpeculativeOptions ngram(int64_t k) {
  engine::SpeculativeOptions o;
  o.num_tokens = k;
  return o;
}

// Runs 24 prompts (some with a stop string, different lengths) through the target alone and
// with speculation, all requests of one engine batched; every result and stream must be equal.
engine::EngineStats expect_greedy_identical(const Fixture& f,
                                            const engine::SpeculativeOptions& so) {
  const int kPrompts = 24;
  engine::EngineOptions eo;
  eo.max_seqs = 6;
  eo.max_step_tokens = 40;
  std::vector<Stream> plain_s(kPrompts), spec_s(kPrompts);
  std::vector<engine::Result> plain;
  for (int i = 0; i < kPrompts; ++i) {
    engine::Engine alone(f.target, f.tok, eo);
    plain.push_back(alone.generate({greedy(repetitive_prompt(i), 12 + i % 20, &plain_s[i])})[0]);
  }
  engine::Engine spec(f.target, f.tok, eo);
  spec.enable_speculation(so);
  std::vector<engine::Request> reqs;
  for (int i = 0; i < kPrompts; ++i) {
    auto r = greedy(repetitive_prompt(i), 12 + i % 20, &spec_s[i]);
    // Every third prompt stops at a string from the middle of the target's own output.
    if (i % 3 == 0 && plain[i].text.size() > 8) {
      r.params.stop = {plain[i].text.substr(5, 2)};
      plain_s[i] = {};
      engine::Engine alone(f.target, f.tok, eo);
      auto p = greedy(repetitive_prompt(i), 12 + i % 20, &plain_s[i]);
      p.params.stop = r.params.stop;
      plain[i] = alone.generate({std::move(p)})[0];
      EXPECT_EQ(plain[i].finish_reason, engine::FinishReason::stop_string);
    }
    reqs.push_back(std::move(r));
  }
  auto got = spec.generate(std::move(reqs));
  for (int i = 0; i < kPrompts; ++i) {
    EXPECT_EQ(got[i].tokens, plain[i].tokens) << "prompt " << i;
    EXPECT_EQ(got[i].text, plain[i].text) << "prompt " << i;
    EXPECT_EQ(got[i].finish_reason, plain[i].finish_reason) << "prompt " << i;
    EXPECT_EQ(spec_s[i].text, plain_s[i].text) << "prompt " << i;
    EXPECT_EQ(spec_s[i].tokens, plain_s[i].tokens) << "prompt " << i;
  }
  EXPECT_EQ(spec.cache().manager().stats().used_blocks, 0);
  const auto& st = spec.stats();
  EXPECT_GT(st.draft_proposed, 0);
  EXPECT_GT(st.spec_verifications, 0);
  int64_t per_request = 0;
  for (const auto& r : got) per_request += r.draft_proposed;
  EXPECT_EQ(per_request, st.draft_proposed);
  return st;
}

}  // namespace

TEST(Speculative, GreedySelfDraftAcceptsEverything) {
  Fixture f;
  const auto st = expect_greedy_identical(f, draft_with(f.target, f.tok, 4));
  EXPECT_EQ(st.draft_accepted, st.draft_proposed);
  EXPECT_DOUBLE_EQ(st.acceptance_rate(), 1.0);
}

TEST(Speculative, GreedyBadDraftIsStillIdentical) {
  Fixture f;
  auto bad = fixtures::tiny_model(f.c, 99);
  const auto st = expect_greedy_identical(f, draft_with(bad, f.tok, 5));
  EXPECT_LT(st.draft_accepted, st.draft_proposed);
}

TEST(Speculative, GreedyNgramIsIdentical) {
  Fixture f;
  const auto st = expect_greedy_identical(f, ngram(3));
  EXPECT_GT(st.draft_accepted, 0);
}

TEST(Speculative, RollbackLeavesTheCacheOfAPlainRun) {
  Fixture f;
  auto bad = fixtures::tiny_model(f.c, 98);
  engine::EngineOptions eo;
  engine::Engine spec(f.target, f.tok, eo), plain(f.target, f.tok, eo);
  spec.enable_speculation(draft_with(bad, f.tok, 4));
  Stream s1, s2;
  const auto prompt = repetitive_prompt(3);
  const int64_t a = spec.submit(greedy(prompt, 40, &s1)), b = plain.submit(greedy(prompt, 40, &s2));
  int checked = 0;
  while (spec.step() && !spec.finished(a)) {
    const engine::SeqState* x = spec.state(a);
    while (plain.state(b)->length() < x->length()) plain.step();
    const engine::SeqState* y = plain.state(b);
    ASSERT_EQ(x->tokens, y->tokens);
    ASSERT_EQ(x->computed, y->computed);
    const auto& m1 = spec.cache().manager();
    const auto& m2 = plain.cache().manager();
    ASSERT_EQ(m1.length(x->kv_id), m2.length(y->kv_id));
    ASSERT_EQ(m1.length(x->kv_id), x->computed);
    std::vector<int64_t> i1(x->computed), i2(x->computed);
    m1.slots(x->kv_id, 0, static_cast<int32_t>(x->computed), i1.data());
    m2.slots(y->kv_id, 0, static_cast<int32_t>(x->computed), i2.data());
    const auto t1 = at::tensor(i1, at::kLong), t2 = at::tensor(i2, at::kLong);
    for (int64_t l = 0; l < f.c.num_layers; ++l) {
      EXPECT_TRUE(at::allclose(spec.cache().k(l).index_select(0, t1),
                               plain.cache().k(l).index_select(0, t2), 1e-4, 1e-5));
      EXPECT_TRUE(at::allclose(spec.cache().v(l).index_select(0, t1),
                               plain.cache().v(l).index_select(0, t2), 1e-4, 1e-5));
    }
    ++checked;
  }
  EXPECT_GT(checked, 3);
  EXPECT_GT(spec.stats().draft_proposed, spec.stats().draft_accepted);  // there were rejections
}

TEST(Speculative, DraftCacheRollsBackToTheKeptTokens) {
  Fixture f;
  auto draft = fixtures::tiny_model(f.c, 7);
  engine::SamplingParams sp;
  sp.temperature = 0;
  std::mt19937_64 rng(1);
  auto one = [&](engine::Drafter& d, const std::vector<int32_t>& toks) {
    std::vector<engine::DraftRequest> r(1);
    r[0].id = 5;
    r[0].tokens = &toks;
    r[0].k = 4;
    r[0].params = &sp;
    r[0].rng = &rng;
    d.propose(r);
    return r[0].out;
  };
  auto used = engine::make_model_drafter(draft, f.c.vocab_size, 256, 16);
  auto toks = lcg_tokens(21, 4, 256);
  const auto first = one(*used, toks);
  ASSERT_EQ(first.size(), 4u);
  // The target kept the first draft token and replaced the second.
  toks.push_back(first[0]);
  toks.push_back((first[1] + 1) % 256);
  used->commit(5, static_cast<int64_t>(toks.size()) - 1);
  auto fresh = engine::make_model_drafter(draft, f.c.vocab_size, 256, 16);
  EXPECT_EQ(one(*used, toks), one(*fresh, toks));
  used->release(5);
}

TEST(Speculative, NgramLookup) {
  using engine::ngram_lookup;
  EXPECT_EQ(ngram_lookup({1, 2, 3, 4, 1, 2}, 3, 1, 3), (std::vector<int32_t>{3, 4, 1}));
  EXPECT_EQ(ngram_lookup({1, 2, 1}, 5, 1, 3), (std::vector<int32_t>{2, 1}));
  EXPECT_TRUE(ngram_lookup({5, 6, 7}, 3, 1, 3).empty());
  EXPECT_TRUE(ngram_lookup({5}, 3, 1, 3).empty());
  // The longest n-gram wins over a later, shorter match; the latest occurrence of equal length.
  EXPECT_EQ(ngram_lookup({1, 2, 9, 3, 2, 7, 1, 2}, 2, 1, 2), (std::vector<int32_t>{9, 3}));
  EXPECT_EQ(ngram_lookup({1, 2, 9, 3, 2, 7, 1, 2}, 2, 1, 1), (std::vector<int32_t>{7, 1}));
  EXPECT_EQ(ngram_lookup({4, 8, 4, 9, 4}, 1, 1, 3), (std::vector<int32_t>{9}));
}

namespace {

double chi_square(const std::vector<double>& expected_p, const std::vector<int64_t>& counts,
                  int64_t n, int* dof) {
  // Cells expected below 5 are pooled into one; a token drawn where the target's probability
  // is 0 fails outright (a pool expecting nothing would hide it).
  double chi = 0, pool_e = 0, pool_o = 0;
  int cells = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (expected_p[i] == 0 && counts[i] > 0) return INFINITY;
    const double e = expected_p[i] * static_cast<double>(n);
    if (e < 5) {
      pool_e += e;
      pool_o += static_cast<double>(counts[i]);
      continue;
    }
    chi += (counts[i] - e) * (counts[i] - e) / e;
    ++cells;
  }
  if (pool_e > 0) {
    chi += (pool_o - pool_e) * (pool_o - pool_e) / std::max(pool_e, 1.0);
    ++cells;
  }
  *dof = cells - 1;
  return chi;
}

// Far in the tail of chi-square(dof) (p < 1e-4 for the dofs here) yet tight enough that a
// broken acceptance rule lands far above it.
double chi_bound(int dof) { return dof + 5 * std::sqrt(2.0 * dof) + 5; }

// counts (n draws) follow expected_p: the statistic first, then the bound of its dof.
void expect_follows(const std::vector<double>& expected_p, const std::vector<int64_t>& counts,
                    int64_t n, const std::string& what) {
  int dof = 0;
  const double chi = chi_square(expected_p, counts, n, &dof);
  EXPECT_LT(chi, chi_bound(dof)) << what
                                 << (std::isinf(chi) ? ": a token the target never draws"
                                                     : " (dof " + std::to_string(dof) + ")");
}

engine::Distribution dist_of(std::vector<double> p) {
  engine::Distribution d;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] > 0) d.push_back({static_cast<int32_t>(i), p[i]});
  return d;
}

}  // namespace

TEST(Speculative, AcceptanceRuleKeepsTheTargetDistribution) {
  const std::vector<double> p = {0.4, 0.25, 0.15, 0.1, 0.1, 0.0};
  const std::vector<double> q = {0.05, 0.1, 0.2, 0.05, 0.3, 0.3};
  const auto P = dist_of(p), Q = dist_of(q);
  std::mt19937_64 rng(123);
  const int64_t n = 1000000;
  std::vector<int64_t> from_model(p.size()), from_ngram(p.size());
  int64_t rejected = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t d = engine::draw(Q, rng);
    const auto v = engine::verify_draft(P, &Q, d, rng);
    rejected += !v.accepted;
    from_model[v.token]++;
    const auto w = engine::verify_draft(P, nullptr, static_cast<int32_t>(i % 3 == 0 ? 5 : 1), rng);
    from_ngram[w.token]++;
  }
  expect_follows(p, from_model, n, "draft model");
  expect_follows(p, from_ngram, n, "n-gram");
  EXPECT_GT(rejected, n / 10);
  EXPECT_EQ(from_model[5], 0);
  // Greedy: one-hot p keeps a matching draft and replaces any other by the argmax.
  const engine::Distribution g = {{2, 1.0}};
  EXPECT_TRUE(engine::verify_draft(g, nullptr, 2, rng).accepted);
  const auto r = engine::verify_draft(g, nullptr, 3, rng);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(r.token, 2);
}

namespace {

// The target's exact next-token probabilities after ids with temperature t and top-k,
// computed from the full forward with plain libtorch ops.
std::vector<double> exact_next(const model::LlamaModel& m, const std::vector<int32_t>& ids,
                               double t, int64_t top_k) {
  at::NoGradGuard g;
  std::vector<int64_t> v(ids.begin(), ids.end());
  auto l = m.forward_full(at::tensor(v, at::kLong).unsqueeze(0))[0][-1].to(at::kDouble) / t;
  auto kth = std::get<0>(l.topk(top_k)).min();
  l = at::where(l >= kth, l, at::full_like(l, -INFINITY));
  auto p = at::softmax(l, 0).contiguous();
  return {p.data_ptr<double>(), p.data_ptr<double>() + p.numel()};
}

void expect_sampled_distribution(bool draft_model) {
  model::ModelConfig c = fixtures::tiny_config(2, false, /*tied=*/false);
  c.vocab_size = 16;  // a vocabulary small enough to count every cell
  auto target = fixtures::tiny_model(c, 5);
  auto draft = fixtures::tiny_model(c, 6);
  auto tok = fixtures::tiny_tokenizer();
  std::vector<int32_t> prompt = lcg_tokens(5, 9, 16);
  for (int32_t t = 15; t >= 0; --t) prompt.push_back(t);  // n-gram lookup matches every token
  const double temp = 0.9;
  const int64_t top_k = 6;

  // Exact marginals of the first three generated tokens, and their joint distribution: exact
  // zeros wherever a token is outside the top-k after the tokens before it.
  std::vector<double> m1 = exact_next(*target, prompt, temp, top_k), m2(16), m3(16), joint(4096);
  for (int32_t a = 0; a < 16; ++a) {
    if (m1[a] == 0) continue;
    auto pa = prompt;
    pa.push_back(a);
    const auto p2 = exact_next(*target, pa, temp, top_k);
    for (int32_t b = 0; b < 16; ++b) {
      if (p2[b] == 0) continue;
      m2[b] += m1[a] * p2[b];
      auto pb = pa;
      pb.push_back(b);
      const auto p3 = exact_next(*target, pb, temp, top_k);
      for (int32_t x = 0; x < 16; ++x) {
        m3[x] += m1[a] * p2[b] * p3[x];
        joint[(a * 16 + b) * 16 + x] = m1[a] * p2[b] * p3[x];
      }
    }
  }

  engine::EngineOptions eo;
  eo.max_seqs = 64;
  eo.max_step_tokens = 512;
  engine::Engine eng(target, tok, eo);
  eng.enable_speculation(draft_model ? draft_with(draft, tok, 2) : ngram(2));
  const int64_t n = 6000;
  std::vector<engine::Request> reqs;
  for (int64_t i = 0; i < n; ++i) {
    engine::Request r;
    r.prompt = prompt;
    r.params.temperature = temp;
    r.params.top_k = top_k;
    r.params.seed = static_cast<uint64_t>(1000 + i);
    r.params.max_new_tokens = 3;
    r.params.ignore_eos = true;
    reqs.push_back(std::move(r));
  }
  std::vector<std::vector<int64_t>> counts(3, std::vector<int64_t>(16));
  std::vector<int64_t> joint_counts(4096);
  for (const auto& r : eng.generate(std::move(reqs))) {
    ASSERT_EQ(r.tokens.size(), 3u);
    for (int j = 0; j < 3; ++j) counts[j][r.tokens[j]]++;
    joint_counts[(r.tokens[0] * 16 + r.tokens[1]) * 16 + r.tokens[2]]++;
  }
  const std::vector<double>* want[3] = {&m1, &m2, &m3};
  for (int j = 0; j < 3; ++j)
    expect_follows(*want[j], counts[j], n, "token " + std::to_string(j + 1));
  expect_follows(joint, joint_counts, n, "tokens 1-3 together");
  const auto& st = eng.stats();
  EXPECT_GT(st.draft_accepted, 0);  // both the accepting and the rejecting path ran
  EXPECT_LT(st.draft_accepted, st.draft_proposed);
}

}  // namespace

TEST(Speculative, SampledDraftModelKeepsTheTargetDistribution) {
  expect_sampled_distribution(true);
}
TEST(Speculative, SampledNgramKeepsTheTargetDistribution) { expect_sampled_distribution(false); }

namespace {
// The tiny tokenizer with one piece renamed: a different vocabulary of the same size.
class RenamedPiece : public tok::Tokenizer {
 public:
  explicit RenamedPiece(std::shared_ptr<tok::Tokenizer> t) : t_(std::move(t)) {}
  std::vector<int32_t> encode(std::string_view s, bool ps) const override {
    return t_->encode(s, ps);
  }
  std::string decode(const std::vector<int32_t>& ids, bool skip) const override {
    return t_->decode(ids, skip);
  }
  std::string piece(int32_t id) const override { return id == 65 ? "<renamed>" : t_->piece(id); }
  std::string token_bytes(int32_t id) const override { return t_->token_bytes(id); }
  std::optional<int32_t> token_to_id(std::string_view p) const override {
    return t_->token_to_id(p);
  }
  int32_t vocab_size() const override { return t_->vocab_size(); }
  bool is_special(int32_t id) const override { return t_->is_special(id); }

 private:
  std::shared_ptr<tok::Tokenizer> t_;
};

void expect_error(const std::function<void()>& f, const std::string& want) {
  try {
    f();
    ADD_FAILURE() << "no error; wanted one mentioning '" << want << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(Speculative, BadOptionsAreErrors) {
  Fixture f;
  auto fresh = [&] { return std::make_unique<engine::Engine>(f.target, f.tok); };
  expect_error([&] { fresh()->enable_speculation(ngram(0)); }, "num_speculative_tokens");
  expect_error([&] { fresh()->enable_speculation(ngram(33)); }, "num_speculative_tokens");
  auto renamed = std::make_shared<RenamedPiece>(f.tok);
  expect_error([&] { fresh()->enable_speculation(draft_with(f.target, renamed, 4)); },
               "vocabulary differs from the target's at token 65");
  model::ModelConfig small = f.c;
  small.vocab_size = 200;
  expect_error(
      [&] { fresh()->enable_speculation(draft_with(fixtures::tiny_model(small), f.tok, 4)); },
      "200 rows");
  engine::SpeculativeOptions bad_n = ngram(2);
  bad_n.ngram_min = 3;
  bad_n.ngram_max = 2;
  expect_error([&] { fresh()->enable_speculation(bad_n); }, "ngram_min");
  auto e = fresh();
  Stream s;
  e->submit(greedy({1, 2, 3}, 2, &s));
  expect_error([&] { e->enable_speculation(ngram(2)); }, "before the first request");
}
