// The default model's token table kept as its GGUF blocks (the tied Q8_0 table the head runs
// on) instead of a dense fp32 copy: the rows looked up must be the table's rows, so every
// forward equals the same model with the dense table.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "load/loader.h"
#include "model/llama.h"
#include "ops/gguf.h"

using namespace sllm;
namespace fs = std::filesystem;

namespace {

const std::string kModel = std::string(SLLM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";

class EmbedBlocks : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kModel)) return;
    at::set_num_threads(2);
    load::LoadOptions stored, deq;
    deq.dequantize = true;
    stored_ = new load::LoadedModel(load::load_model(kModel, stored));
    deq_ = new load::LoadedModel(load::load_model(kModel, deq));
  }
  static void TearDownTestSuite() {
    delete stored_;
    delete deq_;
  }
  void SetUp() override {
    if (!fs::exists(kModel)) GTEST_SKIP() << kModel << " is absent: run scripts/setup.sh";
  }
  // The stored model with a dense copy of its table: everything else shared.
  static std::shared_ptr<const model::LlamaModel> dense_twin() {
    const auto& m = *stored_->model;
    return std::make_shared<const model::LlamaModel>(m.config(), m.embed(), m.layers(),
                                                     m.final_norm(), m.lm_head());
  }
  static load::LoadedModel *stored_, *deq_;
};
load::LoadedModel* EmbedBlocks::stored_ = nullptr;
load::LoadedModel* EmbedBlocks::deq_ = nullptr;

TEST_F(EmbedBlocks, TheTiedTableStaysInTheHeadsBlocks) {
  const auto& m = *stored_->model;
  ASSERT_NE(m.embed_blocks(), nullptr);
  EXPECT_NE(m.embed_blocks()->format_name().find("Q8_0"), std::string::npos)
      << m.embed_blocks()->format_name();
  // No dense table: the model holds about a quarter of the fp32 table's 113 MB for it.
  EXPECT_EQ(deq_->model->embed_blocks(), nullptr);
  const int64_t table = m.config().vocab_size * m.config().hidden_size * 4;
  EXPECT_LT(m.weight_bytes() + static_cast<uint64_t>(table) / 2, deq_->model->weight_bytes());
}

TEST_F(EmbedBlocks, DecodedTableEqualsTheLoadersDequantizedOne) {
  // Two decoders of the same Q8_0 bytes: the loader's (the reference dequantizer) and the
  // as-stored row lookup.
  EXPECT_TRUE(at::equal(stored_->model->embed(), deq_->model->embed()));
}

TEST_F(EmbedBlocks, LookupRowsEqualTheDenseTableRows) {
  const auto& m = *stored_->model;
  const int64_t V = m.config().vocab_size;
  auto ids =
      at::tensor(std::vector<int64_t>{0, 1, 2, 17, 4242, V / 2, V - 2, V - 1, 17}, at::kLong);
  auto rows = ops::gguf_rows(m.embed_blocks()->get<model::GgufFormat>().only(), ids, at::kFloat);
  EXPECT_TRUE(at::equal(rows, deq_->model->embed().index_select(0, ids)));
}

TEST_F(EmbedBlocks, ForwardAndGreedyDecodeEqualTheDenseTable) {
  auto twin = dense_twin();
  auto ids = at::randint(0, stored_->model->config().vocab_size, {2, 24},
                         at::TensorOptions().dtype(at::kLong));
  EXPECT_TRUE(at::equal(stored_->model->forward_full(ids), twin->forward_full(ids)));

  engine::Request r;
  r.prompt = stored_->tokenizer->encode("The capital of France is", false);
  r.params.temperature = 0;
  r.params.max_new_tokens = 12;
  r.params.ignore_eos = true;
  engine::Engine a(stored_->model, stored_->tokenizer, {.context = 256});
  engine::Engine b(twin, stored_->tokenizer, {.context = 256});
  const auto ta = a.generate({r})[0].tokens, tb = b.generate({r})[0].tokens;
  EXPECT_EQ(ta, tb);
  EXPECT_EQ(ta.size(), 12u);
}

}  // namespace
