// The public API (include/sllm/) on the default model: errors come out as sllm::Error, requests
// batched in one Session answer as they do alone, cancellation (by callback and by id) stops a
// request and keeps the others going.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "sllm/sllm.h"

namespace {

const std::string kModel = std::string(SLLM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

const sllm::Model& model() {
  static const sllm::Model m = sllm::Model::load(kModel);
  return m;
}

sllm::GenerationRequest greedy(const std::string& prompt, int64_t n) {
  sllm::GenerationRequest r;
  r.prompt = prompt;
  r.chat_template = true;
  r.sampling.temperature = 0;
  r.sampling.max_new_tokens = n;
  r.sampling.ignore_eos = true;
  return r;
}

class Api : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kModel)) GTEST_SKIP() << kModel << " is absent (scripts/setup.sh)";
  }
};

TEST_F(Api, MissingModelIsAnErrorNamingThePath) {
  try {
    sllm::Model::load("/nonexistent/model.gguf");
    FAIL() << "no error";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/model.gguf"), std::string::npos) << e.what();
  }
  EXPECT_THROW(sllm::Model::load(kModel, {.dtype = "fp8"}), sllm::Error);
}

TEST_F(Api, InfoAndTokenizer) {
  const auto info = model().info();
  EXPECT_EQ(info.layers, 30);
  EXPECT_EQ(info.file_format, "gguf");
  EXPECT_GT(info.weight_formats.at("Q4_1"), 0);
  const auto tok = model().tokenizer();
  const std::string text = "Hello, world! 안녕하세요";
  EXPECT_EQ(tok.decode(tok.encode(text)), text);
  EXPECT_TRUE(tok.has_chat_template());
  const auto chat = tok.encode_chat({{"user", "Hi"}});
  EXPECT_GT(chat.size(), tok.encode("Hi").size());
  EXPECT_THROW(tok.decode({tok.vocab_size()}), sllm::Error);
}

TEST_F(Api, BatchedRequestsAnswerAsAlone) {
  sllm::Session alone(model());
  const auto a = alone.generate(greedy("Name three colors.", 12));
  const auto b = alone.generate(greedy("What is 2+2?", 12));
  sllm::Session together(model(), {.max_seqs = 4});
  const auto both =
      together.generate({greedy("Name three colors.", 12), greedy("What is 2+2?", 12)});
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0].tokens, a.tokens);
  EXPECT_EQ(both[1].tokens, b.tokens);
  EXPECT_EQ(a.finish_reason, "length");
  EXPECT_EQ(a.tokens.size(), 12u);
}

TEST_F(Api, CallbackAndIdCancelOneRequestOthersContinue) {
  sllm::Session s(model());
  auto stop_early = greedy("Write a long story about a cat.", 40);
  int pieces = 0;
  stop_early.on_text = [&](std::string_view) { return ++pieces < 3; };
  const auto id_cb = s.submit(std::move(stop_early));
  const auto id_keep = s.submit(greedy("Name three colors.", 12));
  const auto id_queued = s.submit(greedy("What is 2+2?", 12));
  s.cancel(id_queued);
  while (s.step()) {
  }
  const auto cb = s.take(id_cb), keep = s.take(id_keep), queued = s.take(id_queued);
  EXPECT_EQ(cb.finish_reason, "cancelled");
  EXPECT_LT(cb.tokens.size(), 40u);
  EXPECT_EQ(queued.finish_reason, "cancelled");
  EXPECT_EQ(keep.finish_reason, "length");
  sllm::Session alone(model());
  EXPECT_EQ(keep.tokens, alone.generate(greedy("Name three colors.", 12)).tokens);
}

TEST_F(Api, BadRequestsAreErrors) {
  sllm::Session s(model());
  auto both = greedy("Hi", 4);
  both.messages = {{"user", "Hi"}};
  EXPECT_THROW(s.submit(both), sllm::Error);
  auto bad = greedy("Hi", 4);
  bad.sampling.top_p = 2.0;
  EXPECT_THROW(s.submit(bad), sllm::Error);
  EXPECT_THROW(s.submit(greedy("", 4)), sllm::Error);
  EXPECT_THROW(sllm::perplexity(model(), "some text", 1), sllm::Error);
  EXPECT_THROW(sllm::evaluate_task(model(), "/nonexistent/task.jsonl"), sllm::Error);
}

TEST_F(Api, TaskEvaluation) {
  const auto path = std::filesystem::temp_directory_path() / "sllm_api_task.jsonl";
  std::ofstream(path)
      << R"({"prompt": "What is the capital of France? Answer with one word.", "completion": "Paris"})"
      << "\n"
      << R"({"prompt": "Say yes.", "completion": "yes", "task": "echo"})"
      << "\n";
  const auto r = sllm::evaluate_task(model(), path.string(), {.max_new_tokens = 8});
  std::filesystem::remove(path);
  EXPECT_EQ(r.n, 2);
  ASSERT_EQ(r.items.size(), 2u);
  EXPECT_EQ(r.per_task.at("echo").second, 1);
  EXPECT_FALSE(r.items[0].got.empty());
}

}  // namespace
