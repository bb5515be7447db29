// Constrained output in the engine on tiny random models: the mask is applied before sampling,
// the sequence ends when the constraint is complete, speculation leaves it alone, and a JSON
// object constraint only ever yields prefixes of a JSON object.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <limits>

#include "engine/engine.h"
#include "engine/plan/json_constraint.h"
#include "tiny_model.h"

using namespace sllm;

namespace {

// Allows only the next token of a fixed script; complete at its end.
class Script : public engine::TokenConstraint {
 public:
  explicit Script(std::vector<int32_t> s) : script_(std::move(s)) {}
  bool mask(float* logits, int64_t vocab) const override {
    for (int64_t i = 0; i < vocab; ++i)
      if (next_ >= script_.size() || i != script_[next_])
        logits[i] = -std::numeric_limits<float>::infinity();
    return next_ < script_.size();
  }
  void advance(int32_t t) override {
    ASSERT_LT(next_, script_.size());
    EXPECT_EQ(t, script_[next_]);
    ++next_;
  }
  bool complete() const override { return next_ == script_.size(); }

 private:
  std::vector<int32_t> script_;
  size_t next_ = 0;
};

engine::Request request(std::vector<int32_t> prompt, double temperature, uint64_t seed, int n) {
  engine::Request r;
  r.prompt = std::move(prompt);
  r.params.temperature = temperature;
  r.params.seed = seed;
  r.params.max_new_tokens = n;
  return r;
}

struct Fixture {
  std::shared_ptr<model::LlamaModel> m =
      fixtures::tiny_model(fixtures::tiny_config(2, false, /*tied=*/false), 5);
  std::shared_ptr<tok::Tokenizer> tok = fixtures::tiny_tokenizer();
};

TEST(ConstrainedOutput, FollowsTheMaskAndEndsWhenComplete) {
  Fixture f;
  const std::vector<int32_t> script = {'{', '"', 'k', '"', ':', '7', '}'};
  for (double temperature : {0.0, 1.0}) {
    engine::Engine eng(f.m, f.tok);
    auto r = request({'a', 'b', 'c'}, temperature, 3, 40);
    r.params.ignore_eos = true;  // only the constraint can end it before 40 tokens
    r.constraint = std::make_shared<Script>(script);
    const auto res = eng.generate({std::move(r)})[0];
    EXPECT_EQ(res.tokens, script);
    EXPECT_EQ(res.text, "{\"k\":7}");
    EXPECT_EQ(res.finish_reason, engine::FinishReason::stop);
  }
}

TEST(ConstrainedOutput, SpeculationSkipsConstrainedSequencesAndKeepsTheirOutput) {
  Fixture f;
  engine::EngineOptions eo;
  eo.max_seqs = 4;
  auto vocab = std::make_shared<const engine::JsonVocab>(*f.tok);
  auto make = [&](int i) {
    auto r = request({'x', 'y', 'x', 'y', 'x', 'y', static_cast<int32_t>('a' + i)}, 0, 1, 24);
    if (i % 2 == 0) r.constraint = std::make_shared<engine::JsonObjectConstraint>(vocab);
    return r;
  };
  std::vector<engine::Result> alone;
  for (int i = 0; i < 4; ++i)
    alone.push_back(engine::Engine(f.m, f.tok, eo).generate({make(i)})[0]);
  engine::Engine spec(f.m, f.tok, eo);
  engine::SpeculativeOptions so;
  so.num_tokens = 3;
  spec.enable_speculation(so);
  std::vector<engine::Request> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(make(i));
  const auto got = spec.generate(std::move(reqs));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(got[i].tokens, alone[i].tokens) << i;
    if (i % 2 == 0) EXPECT_EQ(got[i].draft_proposed, 0) << i;
  }
  EXPECT_EQ(alone[0].text[alone[0].text.find_first_not_of(" \t\r\n")], '{');
}

// The parser stops only for want of more input.
bool json_prefix(const std::string& s) {
  try {
    const auto j = nlohmann::json::parse(s);
    return j.is_object();
  } catch (const nlohmann::json::parse_error& e) {
    return e.byte == s.size() + 1;
  } catch (const nlohmann::json::out_of_range&) {
    return true;
  }
}

TEST(ConstrainedOutput, JsonObjectOutputIsAlwaysAJsonPrefix) {
  Fixture f;
  auto vocab = std::make_shared<const engine::JsonVocab>(*f.tok);
  engine::Engine eng(f.m, f.tok);
  std::vector<engine::Request> reqs;
  for (int i = 0; i < 12; ++i) {
    auto r = request({'q', static_cast<int32_t>('0' + i)}, i < 2 ? 0.0 : 1.5, 100 + i, 48);
    r.constraint = std::make_shared<engine::JsonObjectConstraint>(vocab);
    reqs.push_back(std::move(r));
  }
  for (const auto& res : eng.generate(std::move(reqs))) {
    SCOPED_TRACE(res.text);
    const size_t first = res.text.find_first_not_of(" \t\r\n");  // whitespace may lead
    ASSERT_NE(first, std::string::npos);
    EXPECT_EQ(res.text[first], '{');
    EXPECT_TRUE(json_prefix(res.text));
    for (int32_t t : res.tokens) EXPECT_FALSE(f.tok->is_special(t));
    if (res.finish_reason == engine::FinishReason::stop)
      EXPECT_TRUE(nlohmann::json::parse(res.text).is_object());
    else
      EXPECT_EQ(res.tokens.size(), 48u);
  }
}

}  // namespace
