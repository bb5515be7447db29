// The default model (Q4_1 decoder Linears, tied Q8_0 embedding) run with its GGUF blocks as
// stored vs the dequantized fp32 path of earlier releases: formats, logits, greedy tokens and
// the perplexity of tests/data/ppl_en.txt (with the KL divergence of each as-stored path from
// the dequantized one). The same for K-quant blocks: the default model written as F32 GGUF and
// quantized to Q4_K_M by llama.cpp (make_kquant_gguf.py, llama-cpp-python; its down_proj rows,
// 1536 wide, become Q4_K / Q6_K, the 576-wide ones fall back to 32-element types).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include <unistd.h>

#include "apps/common.h"
#include "apps/perplexity.h"
#include "engine/engine.h"
#include "io/atomic_write.h"
#include "load/gguf_export.h"
#include "load/loader.h"

using namespace sllm;
namespace fs = std::filesystem;

namespace {

const std::string kModel = std::string(SLLM_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kText = std::string(SLLM_SOURCE_DIR) + "/tests/data/ppl_en.txt";

// Greedy tokens of a chat prompt (prefill: dequantized tiles; decode: the fused kernels).
std::vector<int32_t> greedy(const load::LoadedModel& m, const std::string& q, int n) {
  engine::Engine eng(m.model, m.tokenizer, {.context = 512});
  engine::Request r;
  r.prompt = apps::encode_prompt(*m.tokenizer, q, true, "");
  r.params.temperature = 0;
  r.params.max_new_tokens = n;
  return eng.generate({r})[0].tokens;
}

class GgufStored : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kModel)) return;
    at::set_num_threads(2);
    load::LoadOptions q8, f32, deq;
    q8.gguf_q8_act = true;
    f32.gguf_q8_act = false;
    deq.dequantize = true;
    q8_ = new load::LoadedModel(load::load_model(kModel, q8));
    f32_ = new load::LoadedModel(load::load_model(kModel, f32));
    deq_ = new load::LoadedModel(load::load_model(kModel, deq));
  }
  static void TearDownTestSuite() {
    delete q8_;
    delete f32_;
    delete deq_;
  }
  void SetUp() override {
    if (!fs::exists(kModel)) GTEST_SKIP() << kModel << " is absent: run scripts/setup.sh";
  }
  static load::LoadedModel *q8_, *f32_, *deq_;
};
load::LoadedModel* GgufStored::q8_ = nullptr;
load::LoadedModel* GgufStored::f32_ = nullptr;
load::LoadedModel* GgufStored::deq_ = nullptr;

TEST_F(GgufStored, KeepsTheStoredFormats) {
  const auto& L = q8_->model->layers()[0];
  for (const auto& [name, l] : L.linears()) {
    ASSERT_TRUE(l.is<model::GgufFormat>()) << name << " is " << l.format_name();
    EXPECT_EQ(l.get<model::GgufFormat>().only().type_name(), "Q4_1");
  }
  const auto& head = q8_->model->lm_head();
  ASSERT_TRUE(head.is<model::GgufFormat>()) << head.format_name();
  EXPECT_EQ(head.get<model::GgufFormat>().only().type_name(), "Q8_0");
  EXPECT_EQ(head.format_name(), "gguf Q8_0 (int8 activations)");
  EXPECT_EQ(f32_->model->lm_head().format_name(), "gguf Q8_0 (fp32 activations)");
  EXPECT_TRUE(deq_->model->layers()[0].qkv.is<model::DenseFormat>());
  EXPECT_TRUE(deq_->model->lm_head().is<model::DenseFormat>());
  EXPECT_EQ(q8_->stored_types.at("model.layers.0.self_attn.q_proj.weight"), "Q4_1");
  EXPECT_EQ(q8_->stored_types.at("model.embed_tokens.weight"), "Q8_0");
  // the stored blocks dequantize to exactly the dense path's weights (q/k rows un-permuted)
  for (int i : {0, 29}) {
    const auto& a = q8_->model->layers()[i];
    const auto& b = deq_->model->layers()[i];
    for (int k = 0; k < 4; ++k)
      EXPECT_TRUE(
          at::equal(a.linears()[k].linear.dense_part(0), b.linears()[k].linear.dense_part(0)))
          << "layer " << i << " " << a.linears()[k].name;
  }
  EXPECT_TRUE(at::equal(q8_->model->lm_head().dense_part(0), deq_->model->embed()));
}

TEST_F(GgufStored, Fp32ActivationsGiveTheDequantizedLogitsAndTokens) {
  auto ids =
      at::tensor(std::vector<int64_t>{1, 504, 3458, 282, 4649, 314, 216, 33, 34, 2}, at::kLong)
          .unsqueeze(0);
  at::NoGradGuard g;
  auto a = f32_->model->forward_full(ids), b = deq_->model->forward_full(ids);
  EXPECT_LT((a - b).abs().max().item<float>(), 1e-3);
  // decode runs the fused kernels (one row per step), prefill the dequantized tiles
  for (const std::string q : {"What is the capital of France?", "Name three colors."})
    EXPECT_EQ(greedy(*f32_, q, 32), greedy(*deq_, q, 32)) << q;
}

// The int8 path's perplexity (prefill: x rounded through its int8 blocks, dequantized tiles);
// its fused decode kernels and greedy tokens: test_gguf_q8_act.cpp.
TEST_F(GgufStored, Int8ActivationsStayCloseInPerplexity) {
  const std::string text = io::read_file(kText);
  const auto ids = apps::ppl_tokens(*deq_->tokenizer, text, kText);
  at::NoGradGuard g;
  const auto f = apps::perplexity(*f32_->model, ids, 512, deq_->model.get());
  const auto q = apps::perplexity(*q8_->model, ids, 512, deq_->model.get());
  // fp32 activations: the same products in another order
  EXPECT_LT(std::abs(f.perplexity / f.ref_perplexity - 1), 1e-4) << f.perplexity;
  EXPECT_LT(f.mean_kld, 1e-6);
  // int8 activation blocks (docs/quant_formats.md, bench/results/gguf_act_kld.json)
  EXPECT_LT(std::abs(q.perplexity / q.ref_perplexity - 1), 0.01) << q.perplexity;
  EXPECT_LT(q.mean_kld, 5e-3);
  EXPECT_GT(q.same_top, 95.0);
}

class GgufStoredKQuant : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(kModel)) return;
#ifdef SLLM_TEST_PYTHON
    at::set_num_threads(2);
    dir_ = new fs::path(fs::temp_directory_path() / ("sllm_kquant_" + std::to_string(::getpid())));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    const auto f32_file = (*dir_ / "f32.gguf").string(), k_file = (*dir_ / "q4_k_m.gguf").string();
    {
      load::LoadOptions o;
      o.dequantize = true;
      load::save_gguf(load::load_model(kModel, o), f32_file, "f32");
    }
    const std::string cmd = std::string("\"") + SLLM_TEST_PYTHON + "\" \"" + SLLM_SOURCE_DIR +
                            "/tests/model/make_kquant_gguf.py\" \"" + f32_file + "\" \"" + k_file +
                            "\" > \"" + (*dir_ / "quantize.log").string() + "\" 2>&1";
    if (std::system(cmd.c_str()) != 0) {
      error_ = new std::string("llama.cpp's quantization failed: " +
                               io::read_file((*dir_ / "quantize.log").string()));
      return;
    }
    fs::remove(f32_file);
    load::LoadOptions q8, f32, deq;
    q8.gguf_q8_act = true;
    f32.gguf_q8_act = false;
    deq.dequantize = true;
    q8_ = new load::LoadedModel(load::load_model(k_file, q8));
    f32_ = new load::LoadedModel(load::load_model(k_file, f32));
    deq_ = new load::LoadedModel(load::load_model(k_file, deq));
#endif
  }
  static void TearDownTestSuite() {
    delete q8_;
    delete f32_;
    delete deq_;
    delete error_;
    if (dir_) fs::remove_all(*dir_);
    delete dir_;
  }
  void SetUp() override {
    if (!fs::exists(kModel)) GTEST_SKIP() << kModel << " is absent: run scripts/setup.sh";
#ifndef SLLM_TEST_PYTHON
    GTEST_SKIP() << "SLLM_PYTHON is not configured: no llama.cpp to quantize to K types";
#endif
    ASSERT_EQ(error_, nullptr) << *error_;
  }
  static fs::path* dir_;
  static std::string* error_;
  static load::LoadedModel *q8_, *f32_, *deq_;
};
fs::path* GgufStoredKQuant::dir_ = nullptr;
std::string* GgufStoredKQuant::error_ = nullptr;
load::LoadedModel* GgufStoredKQuant::q8_ = nullptr;
load::LoadedModel* GgufStoredKQuant::f32_ = nullptr;
load::LoadedModel* GgufStoredKQuant::deq_ = nullptr;

TEST_F(GgufStoredKQuant, KeepsTheKQuantBlocks) {
  std::map<std::string, int> kept;
  for (size_t i = 0; i < q8_->model->layers().size(); ++i) {
    const auto& down = q8_->model->layers()[i].down;
    const std::string hf = "model.layers." + std::to_string(i) + ".mlp.down_proj.weight";
    const std::string stored = q8_->stored_types.at(hf);
    if (stored != "Q4_K" && stored != "Q6_K") continue;
    ASSERT_TRUE(down.is<model::GgufFormat>()) << hf << " is " << down.format_name();
    EXPECT_EQ(down.get<model::GgufFormat>().only().type_name(), stored);
    EXPECT_TRUE(deq_->model->layers()[i].down.is<model::DenseFormat>());
    // the stored blocks dequantize to exactly the dense path's weights
    EXPECT_TRUE(at::equal(down.dense_part(0), deq_->model->layers()[i].down.dense_part(0))) << hf;
    kept[stored]++;
  }
  EXPECT_GT(kept["Q4_K"], 0);
  EXPECT_GT(kept["Q6_K"], 0);
}

// llama.cpp's Q4_K_M stores some layers' v in another type than q and k: their q|k|v keeps a piece
// per type, each part's blocks as stored.
TEST_F(GgufStoredKQuant, MixedQkvKeepsAPiecePerType) {
  int mixed = 0;
  for (size_t i = 0; i < q8_->model->layers().size(); ++i) {
    const auto& qkv = q8_->model->layers()[i].qkv;
    const std::string p = "model.layers." + std::to_string(i) + ".self_attn.";
    const std::string tq = q8_->stored_types.at(p + "q_proj.weight"),
                      tk = q8_->stored_types.at(p + "k_proj.weight"),
                      tv = q8_->stored_types.at(p + "v_proj.weight");
    ASSERT_TRUE(qkv.is<model::GgufFormat>()) << p << " is " << qkv.format_name();
    const auto& g = qkv.get<model::GgufFormat>();
    if (tq == tk && tk == tv) {
      EXPECT_EQ(g.pieces.size(), 1u) << p;
      continue;
    }
    ++mixed;
    ASSERT_EQ(tq, tk) << p;  // llama.cpp's recipe changes v only
    ASSERT_EQ(g.pieces.size(), 2u) << p;
    EXPECT_EQ(g.pieces[0].type_name(), tq);
    EXPECT_EQ(g.pieces[1].type_name(), tv);
    EXPECT_EQ(g.pieces[1].out, qkv.parts[2].rows);
    for (int j = 0; j < 3; ++j)
      EXPECT_TRUE(at::equal(qkv.dense_part(j), deq_->model->layers()[i].qkv.dense_part(j)))
          << p << " part " << j;
  }
  EXPECT_GT(mixed, 0);
}

TEST_F(GgufStoredKQuant, GivesTheDequantizedLogitsAndTokens) {
  at::NoGradGuard g;
  // 10 tokens: the fused kernels; 40: the panels (AVX-512) or the dequantized tiles
  for (const int64_t n : {10, 40}) {
    auto ids = (at::arange(n, at::kLong) * 997 + 1).remainder(49152).unsqueeze(0);
    auto want = deq_->model->forward_full(ids);
    auto a = f32_->model->forward_full(ids);
    EXPECT_LT((a - want).abs().max().item<float>(), 1e-3) << n << " tokens, fp32 activations";
    // int8 activation blocks: close in distribution (q|k|v, o, gate|up, down and the head all
    // round their inputs; random ids give larger errors than text, whose mean KLD is in
    // docs/quant_formats.md), and the same top token wherever the reference is confident
    auto q = q8_->model->forward_full(ids);
    auto lp = want.log_softmax(-1), lq = q.log_softmax(-1);
    auto kld = (lp.exp() * (lp - lq)).sum(-1);
    EXPECT_LT(kld.mean().item<float>(), 0.03) << n << " tokens, q8";
    EXPECT_LT(kld.max().item<float>(), 0.2) << n << " tokens, q8";
    auto top2 = want.topk(2, -1);
    auto confident = (std::get<0>(top2).select(-1, 0) - std::get<0>(top2).select(-1, 1)).gt(1.0);
    auto same = q.argmax(-1).eq(std::get<1>(top2).select(-1, 0));
    EXPECT_TRUE(same.logical_or(confident.logical_not()).all().item<bool>()) << n << " tokens, q8";
  }
  for (const std::string q : {"What is the capital of France?", "Name three colors."})
    EXPECT_EQ(greedy(*f32_, q, 32), greedy(*deq_, q, 32)) << q;
}

}  // namespace
