// Several LoRA adapters served in one batch: each request's output equals the model with only its
// adapter applied (the always-on adapter path of lora::load_peft), run alone.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/error.h"
#include "engine/engine.h"
#include "lora/lora.h"
#include "tiny_model.h"

using namespace sllm;
namespace fs = std::filesystem;

namespace {

// A PEFT adapter of m with random A and B (fresh adapters have B = 0: no effect).
std::string random_adapter(const model::LlamaModel& m, std::vector<std::string> targets,
                           uint64_t seed, const std::string& name) {
  lora::LoraConfig c;
  c.r = 4;
  c.alpha = 8;
  c.target_modules = std::move(targets);
  auto a = lora::inject(m, c, seed);
  {
    at::NoGradGuard g;
    at::manual_seed(seed);
    for (auto& p : a->lora_parameters()) p.copy_(at::randn(p.sizes()) * 0.3);
  }
  const auto dir =
      fs::temp_directory_path() / ("sllm_multi_lora_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  lora::save_peft(*a, c, dir.string(), "tiny");
  return dir.string();
}

engine::Request greedy(std::vector<int32_t> prompt, int32_t adapter) {
  engine::Request r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_new_tokens = 12;
  r.params.ignore_eos = true;
  r.adapter = adapter;
  return r;
}

TEST(MultiLora, MixedBatchEqualsEachAdapterAlone) {
  auto base = fixtures::tiny_model(fixtures::tiny_config(2, false, /*tied=*/false), 7);
  auto tok = fixtures::tiny_tokenizer();
  const std::vector<std::string> dirs = {
      random_adapter(*base, {"q_proj", "v_proj"}, 1, "qv"),
      random_adapter(*base, {"all-linear"}, 2, "all")};  // fused q|k|v and gate|up parts too
  std::shared_ptr<const model::LlamaModel> served = base;
  for (size_t i = 0; i < dirs.size(); ++i)
    served = lora::add_served_adapter(*served, dirs[i], static_cast<int32_t>(i + 1));
  std::vector<std::shared_ptr<const model::LlamaModel>> alone_models = {base};
  for (const auto& d : dirs) alone_models.push_back(lora::load_peft(*base, d));

  const std::vector<std::vector<int32_t>> prompts = {
      {'H', 'e', 'l', 'l', 'o'}, {'a', 'b'}, {'T', 'h', 'e', ' ', 'c', 'a', 't', ' ', 's', 'a'}};
  engine::EngineOptions eo;
  eo.max_seqs = 9;
  eo.max_step_tokens = 11;  // chunked prefill mixes adapters inside one step
  std::vector<engine::Request> reqs;
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : prompts)
    for (int32_t k = 0; k <= 2; ++k) {
      reqs.push_back(greedy(p, k));
      engine::Engine one(alone_models[static_cast<size_t>(k)], tok, eo);
      want.push_back(one.generate({greedy(p, 0)})[0].tokens);
    }
  engine::Engine eng(served, tok, eo);
  const auto got = eng.generate(std::move(reqs));
  int differ = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i]) << "prompt " << i / 3 << " adapter " << i % 3;
    if (i % 3 != 0 && want[i] != want[i - i % 3]) ++differ;
  }
  EXPECT_GE(differ, 3);  // the adapters change the answers: the test can tell them apart
  for (const auto& d : dirs) fs::remove_all(d);
}

// The prefix cache keeps adapters apart: the same prompt on another adapter computes its own K/V.
TEST(MultiLora, PrefixCacheKeepsAdaptersApart) {
  auto base = fixtures::tiny_model(fixtures::tiny_config(2, false, /*tied=*/false), 9);
  auto tok = fixtures::tiny_tokenizer();
  const auto dir = random_adapter(*base, {"all-linear"}, 4, "cache");
  auto served = lora::add_served_adapter(*base, dir, 1);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back('a' + i % 26);  // several full KV blocks
  engine::EngineOptions eo;
  eo.prefix_caching = true;
  engine::Engine eng(served, tok, eo);
  const auto base_out = eng.generate({greedy(prompt, 0)})[0].tokens;
  const auto hits0 = eng.stats().prefix_cache_hits;
  const auto with_adapter = eng.generate({greedy(prompt, 1)})[0].tokens;
  EXPECT_EQ(eng.stats().prefix_cache_hits, hits0);  // nothing shared with the base's blocks
  engine::Engine alone(lora::load_peft(*base, dir), tok, eo);
  EXPECT_EQ(with_adapter, alone.generate({greedy(prompt, 0)})[0].tokens);
  EXPECT_NE(with_adapter, base_out);
  EXPECT_EQ(eng.generate({greedy(prompt, 1)})[0].tokens, with_adapter);
  EXPECT_GT(eng.stats().prefix_cache_hits, hits0);  // the adapter's own blocks are shared
  fs::remove_all(dir);
}

TEST(MultiLora, UnknownAdapterIsAnError) {
  auto base = fixtures::tiny_model(fixtures::tiny_config(), 1);
  const auto dir = random_adapter(*base, {"q_proj"}, 3, "one");
  engine::Engine eng(lora::add_served_adapter(*base, dir, 1), fixtures::tiny_tokenizer());
  EXPECT_NO_THROW(eng.submit(greedy({'x'}, 1)));
  try {
    eng.submit(greedy({'x'}, 2));
    ADD_FAILURE() << "adapter 2 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("served adapters 1..1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(lora::add_served_adapter(*base, dir, 0), Error);
  fs::remove_all(dir);
}

}  // namespace
