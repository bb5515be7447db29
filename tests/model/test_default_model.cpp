// Tests on the default model (models/SmolLM2-135M-Instruct.Q4_1.gguf, from scripts/setup.sh).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "apps/common.h"
#include "core/error.h"
#include "engine/engine.h"
#include "kv/kv_cache.h"
#include "load/loader.h"
#include "tokenizer/chat_template.h"

using namespace sllm;
namespace fs = std::filesystem;

namespace {

const std::string kModel = std::string(SLLM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

class DefaultModel : public ::testing::Test {
 protected:
  // A failure inside SetUpTestSuite makes gtest report every test as SKIPPED, which CTest
  // counts as skipped: so the load error is kept here and each test fails on it in SetUp.
  // Only an absent file skips.
  static void SetUpTestSuite() {
    if (!fs::exists(kModel)) return;
    at::set_num_threads(1);
    try {
      m_ = new load::LoadedModel(load::load_model(kModel));
    } catch (const std::exception& e) {
      load_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    delete m_;
    m_ = nullptr;
  }
  void SetUp() override {
    if (!fs::exists(kModel)) GTEST_SKIP() << kModel << " is absent: run scripts/setup.sh";
    ASSERT_NE(m_, nullptr) << kModel << " exists but does not load: " << load_error_;
  }
  static load::LoadedModel* m_;
  static std::string load_error_;

  std::vector<int32_t> chat_prompt(const std::string& q) {
    return apps::encode_prompt(*m_->tokenizer, q, true, "");
  }
  static engine::Request greedy(std::vector<int32_t> p, int n) {
    engine::Request r;
    r.prompt = std::move(p);
    r.params.temperature = 0;
    r.params.max_new_tokens = n;
    return r;
  }
};
load::LoadedModel* DefaultModel::m_ = nullptr;
std::string DefaultModel::load_error_;

TEST_F(DefaultModel, ConfigFromGguf) {
  const auto& c = m_->model->config();
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(m_->tokenizer->vocab_size(), 49152);
  EXPECT_EQ(m_->file_tensor_types.at("Q4_1"), 210);
  EXPECT_EQ(tok::detect_chat_template(*m_->tokenizer).format, tok::ChatFormat::chatml);
}

TEST_F(DefaultModel, AnswersParis) {
  engine::Engine eng(m_->model, m_->tokenizer, {.context = 512});
  auto r = eng.generate({greedy(chat_prompt("What is the capital of France?"), 30)})[0];
  EXPECT_NE(r.text.find("Paris"), std::string::npos) << r.text;
  EXPECT_EQ(r.finish_reason,
            engine::FinishReason::stop);  // ends with <|im_end|>, not by running out of tokens
}

TEST_F(DefaultModel, BatchOfEightEqualsAlone) {
  const std::vector<std::string> qs = {"What is the capital of France?",
                                       "Name three colors.",
                                       "Write a haiku about rain.",
                                       "What is 12 plus 30?",
                                       "Translate 'good morning' to Spanish.",
                                       "Who wrote Hamlet?",
                                       "Give me a tip for sleeping better.",
                                       "What does a CPU do?"};
  std::vector<engine::Request> reqs;
  for (const auto& q : qs) reqs.push_back(greedy(chat_prompt(q), 24));
  engine::Engine batched(m_->model, m_->tokenizer, {.context = 512});
  auto together = batched.generate(std::move(reqs));
  for (size_t i = 0; i < qs.size(); ++i) {
    engine::Engine alone(m_->model, m_->tokenizer, {.context = 512});
    auto r = alone.generate({greedy(chat_prompt(qs[i]), 24)})[0];
    EXPECT_EQ(together[i].tokens, r.tokens)
        << qs[i] << "\nbatched: " << together[i].text << "\nalone:   " << r.text;
  }
}

TEST_F(DefaultModel, KvAllocationMatchesFormula) {
  const auto& c = m_->model->config();
  for (int64_t tokens : {16, 512, 2048}) {
    kv::KvCacheSpec spec{c.num_layers, c.num_kv_heads, c.head_dim,
                         kv::BlockManager::blocks_needed(tokens, 16), 16};
    kv::KvCache cache(spec, at::kFloat, at::kCPU);
    EXPECT_EQ(cache.allocated_bytes(),
              kv::kv_bytes(c.num_layers, c.num_kv_heads, c.head_dim, tokens, 4));
  }
}

TEST_F(DefaultModel, ConvertRoundTripGivesIdenticalLogits) {
  const auto dir = fs::temp_directory_path() / ("sllm-convert-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  load::save_hf_dir(*m_, dir.string(), at::kFloat);
  auto back = load::load_model(dir.string());
  EXPECT_EQ(back.format, "hf");
  auto ids =
      at::tensor(std::vector<int64_t>{1, 504, 3458, 282, 4649, 314, 216, 33, 34, 2}, at::kLong)
          .unsqueeze(0);
  at::NoGradGuard g;
  // The directory holds the GGUF's dequantized weights: the dequantized load's logits exactly
  // (the default load runs the blocks as stored: tests/model/test_gguf_stored.cpp).
  load::LoadOptions deq;
  deq.dequantize = true;
  const auto dense = load::load_model(kModel, deq);
  auto a = dense.model->forward_full(ids), b = back.model->forward_full(ids);
  EXPECT_TRUE(at::equal(a, b)) << (a - b).abs().max().item<float>();
  const std::string text = "Hello, 안녕하세요! 😀 12345  \n\n<|im_start|>";
  EXPECT_EQ(m_->tokenizer->encode(text), back.tokenizer->encode(text));
  // A second convert into the same, now non-empty, directory is refused.
  EXPECT_THROW(load::save_hf_dir(*m_, dir.string(), at::kFloat), Error);
  fs::remove_all(dir);
}

TEST_F(DefaultModel, TokenizerRoundTrips) {
  for (const std::string s :
       {"plain text", "  runs   of spaces\n\n\ttabs", "한국어 문장", "漢字かな",
        "emoji 👩‍👩‍👧 🇰🇷", "don't I'LL", "x = f(y) * 2;"}) {
    EXPECT_EQ(m_->tokenizer->decode(m_->tokenizer->encode(s, false)), s);
  }
}

}  // namespace
