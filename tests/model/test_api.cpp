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
  sllm::LoadOptions fp8;
  fp8.dtype = "fp8";
  EXPECT_THROW(sllm::Model::load(kModel, fp8), sllm::Error);
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
  sllm::SessionOptions four;
  four.max_seqs = 4;
  sllm::Session together(model(), four);
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
  sllm::TaskEvalOptions opts;
  opts.max_new_tokens = 8;
  const auto r = sllm::evaluate_task(model(), path.string(), opts);
  std::filesystem::remove(path);
  EXPECT_EQ(r.n, 2);
  ASSERT_EQ(r.items.size(), 2u);
  EXPECT_EQ(r.per_task.at("echo").second, 1);
  EXPECT_FALSE(r.items[0].got.empty());
}

}  // namespace

namespace {

TEST_F(Api, TrainAndQuantizeJobs) {
  namespace fs = std::filesystem;
  const fs::path tmp = fs::temp_directory_path() / "sllm_api_jobs";
  fs::remove_all(tmp);
  sllm::TrainOptions t;
  t.model = kModel;
  t.train_data = std::string(SLLM_SOURCE_DIR) + "/tests/data/train_tiny.jsonl";
  t.output_dir = tmp.string();
  t.run_name = "qlora";
  t.max_steps = 2;
  t.overrides = {"train.batch_size=2", "train.grad_accum=1", "data.max_seq_length=64", "lora.r=4",
                 "train.log_every=1"};
  const auto run = sllm::train(t);
  EXPECT_EQ(run, (tmp / "qlora").string());
  ASSERT_TRUE(fs::exists(tmp / "qlora" / "adapter" / "adapter_config.json"));
  sllm::LoadOptions with_adapter;
  with_adapter.adapters = {run + "/adapter"};
  const auto tuned = sllm::Model::load(kModel, with_adapter);
  EXPECT_EQ(sllm::Session(tuned).generate(greedy("Hi", 3)).tokens.size(), 3u);

  sllm::QuantizeOptions q;
  q.method = "rtn";
  q.model = kModel;
  q.out = (tmp / "rtn").string();
  sllm::quantize(q);
  const auto rtn = sllm::Model::load(q.out);
  EXPECT_EQ(rtn.info().file_format, "hf");
  const auto p = sllm::perplexity(rtn, "The quick brown fox jumps over the lazy dog.", 64);
  EXPECT_GT(p.perplexity, 1.0);
  EXPECT_LT(p.perplexity, 1e3);
  EXPECT_THROW(sllm::quantize(q), sllm::Error);  // the output directory exists
  q.method = "bogus";
  q.out = (tmp / "bogus").string();
  EXPECT_THROW(sllm::quantize(q), sllm::Error);
  t.overrides.push_back("train.no_such_key=1");
  EXPECT_THROW(sllm::train(t), sllm::Error);
  fs::remove_all(tmp);
}

}  // namespace
