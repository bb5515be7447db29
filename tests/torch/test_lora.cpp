// LoRA adapters: injection, forward = merged forward, PEFT save/load, NF4 base, checkpointing.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_write.h"
#include "lora/lora.h"
#include "model/linear.h"
#include "quant/nf4.h"
#include "tiny_model.h"

namespace fs = std::filesystem;
using namespace sllm;

namespace {

at::Tensor ids_for_test() { return at::randint(0, 256, {2, 12}, at::kLong); }

// Gives every adapter a non-zero B so that the adapters change the output.
void randomize_b(const model::LlamaModel& m) {
  at::NoGradGuard g;
  for (auto& p : m.lora_parameters())
    if (p.abs().sum().item<double>() == 0) p.copy_(at::randn(p.sizes()) * 0.1);
}

std::string temp_dir(const std::string& name) {
  auto d = fs::temp_directory_path() / ("sllm_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d.string();
}

// A copy of m whose decoder Linears are NF4 (bitsandbytes layout, double quant).
std::shared_ptr<model::LlamaModel> to_nf4(const model::LlamaModel& m) {
  return std::make_shared<model::LlamaModel>(m.map_linears([](int64_t, const model::Linear& l) {
    std::vector<quant::Nf4Weight> q;
    quant::Nf4Options o;
    o.double_quant = true;
    for (int p = 0; p < static_cast<int>(l.parts.size()); ++p) {
      auto w = l.dense_part(p).contiguous();
      q.push_back(quant::quantize_nf4(w.data_ptr<float>(), w.sizes().vec(), o));
    }
    return model::make_nf4_linear(l.parts, std::move(q), l.bias);
  }));
}

}  // namespace

TEST(Lora, FreshAdaptersLeaveOutputUnchanged) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  lora::LoraConfig c;
  c.r = 4;
  c.alpha = 8;
  auto m = lora::inject(*base, c, 1);
  at::NoGradGuard g;
  auto ids = ids_for_test();
  EXPECT_TRUE(at::equal(base->forward_full(ids), m->forward_full(ids)));
  // q, k, v, o per layer; A is Kaiming-uniform within 1/sqrt(in), B zero.
  EXPECT_EQ(m->lora_parameters().size(), 2u * 4 * 2);
  const auto& a = m->layers()[0].qkv.lora[0];
  EXPECT_LE(a.A.abs().max().item<double>(), 1.0 / std::sqrt(64.0));
  EXPECT_GT(a.A.abs().max().item<double>(), 0.5 / std::sqrt(64.0));
  EXPECT_EQ(a.B.abs().sum().item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(a.scale, 2.0);
}

TEST(Lora, ForwardEqualsMergedWeights) {
  auto base = fixtures::tiny_model(fixtures::tiny_config(2, /*bias=*/true));
  lora::LoraConfig c;
  c.r = 4;
  c.alpha = 16;
  c.rslora = true;
  c.target_modules = {"all-linear"};
  auto m = lora::inject(*base, c, 3);
  randomize_b(*m);
  auto merged = lora::merge(*m);
  at::NoGradGuard g;
  auto ids = ids_for_test();
  auto a = m->forward_full(ids), b = merged->forward_full(ids);
  EXPECT_FALSE(at::allclose(a, base->forward_full(ids), 1e-3, 1e-3));
  EXPECT_TRUE(at::allclose(a, b, 1e-4, 1e-4)) << (a - b).abs().max().item<double>();
  EXPECT_TRUE(merged->lora_parameters().empty());
}

TEST(Lora, PeftRoundTrip) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  lora::LoraConfig c;
  c.r = 2;
  c.alpha = 5;
  c.target_modules = {"v_proj", "down_proj", "gate_proj"};
  auto m = lora::inject(*base, c, 5);
  randomize_b(*m);
  const auto dir = temp_dir("peft");
  lora::save_peft(*m, c, dir, "tiny");
  auto cfg = nlohmann::json::parse(io::read_file(dir + "/adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 2);
  EXPECT_EQ(cfg["target_modules"], nlohmann::json({"down_proj", "gate_proj", "v_proj"}));
  lora::LoraConfig back;
  auto loaded = lora::load_peft(*base, dir, &back);
  EXPECT_EQ(back.r, 2);
  EXPECT_DOUBLE_EQ(back.alpha, 5);
  at::NoGradGuard g;
  auto ids = ids_for_test();
  EXPECT_TRUE(at::equal(m->forward_full(ids), loaded->forward_full(ids)));
  // Writing over an existing adapter needs replace=true; the old one survives a refusal.
  EXPECT_THROW(lora::save_peft(*m, c, dir, "tiny"), Error);
  EXPECT_TRUE(fs::exists(dir + "/adapter_model.safetensors"));
  fs::remove_all(dir);
}

TEST(Lora, UnknownTargetListsModules) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  lora::LoraConfig c;
  c.target_modules = {"query"};
  try {
    lora::inject(*base, c, 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'query'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"),
              std::string::npos)
        << msg;
  }
}

TEST(Lora, AdapterForAnotherModelIsRejected) {
  auto small = fixtures::tiny_model(fixtures::tiny_config());
  auto cfg = fixtures::tiny_config();
  cfg.hidden_size = 32;
  cfg.head_dim = 8;
  auto other = fixtures::tiny_model(cfg);
  lora::LoraConfig c;
  auto m = lora::inject(*small, c, 0);
  const auto dir = temp_dir("peft_other");
  lora::save_peft(*m, c, dir, "tiny");
  EXPECT_THROW(lora::load_peft(*other, dir), Error);
  fs::remove_all(dir);
}

TEST(Lora, Nf4BaseMatchesDequantizedDenseAndTrainsOnlyAdapters) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  auto q = to_nf4(*base);
  EXPECT_TRUE(q->layers()[0].qkv.is<model::Nf4Format>());
  auto deq =
      std::make_shared<model::LlamaModel>(q->map_linears([](int64_t, const model::Linear& l) {
        std::vector<at::Tensor> w;
        for (int p = 0; p < static_cast<int>(l.parts.size()); ++p) w.push_back(l.dense_part(p));
        model::Linear d{at::cat(w, 0), l.bias};
        d.parts = l.parts;
        return d;
      }));
  auto ids = ids_for_test();
  {
    at::NoGradGuard g;
    auto a = q->forward_full(ids), b = deq->forward_full(ids);
    EXPECT_TRUE(at::allclose(a, b, 1e-4, 1e-4)) << (a - b).abs().max().item<double>();
  }
  lora::LoraConfig c;
  c.dropout = 0;
  c.target_modules = {"all-linear"};
  auto m = lora::inject(*q, c, 2);
  auto md = lora::inject(*deq, c, 2);
  randomize_b(*m);
  {
    at::NoGradGuard g;
    auto pm = m->lora_parameters(), pd = md->lora_parameters();
    for (size_t i = 0; i < pm.size(); ++i) pd[i].copy_(pm[i]);
  }
  auto loss = m->forward_full(ids).logsumexp(-1).mean();
  loss.backward();
  auto loss_d = md->forward_full(ids).logsumexp(-1).mean();
  loss_d.backward();
  auto pm = m->lora_parameters(), pd = md->lora_parameters();
  for (size_t i = 0; i < pm.size(); ++i) {
    ASSERT_TRUE(pm[i].grad().defined()) << i;
    EXPECT_TRUE(at::allclose(pm[i].grad(), pd[i].grad(), 1e-3, 1e-5))
        << i << " " << (pm[i].grad() - pd[i].grad()).abs().max().item<double>();
  }
}

TEST(Lora, GradientCheckpointingGivesTheSameGradients) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  lora::LoraConfig c;
  c.dropout = 0.3;  // the recomputation must replay the same dropout masks
  c.target_modules = {"all-linear"};
  auto m = lora::inject(*base, c, 9);
  randomize_b(*m);
  auto ids = ids_for_test();
  std::vector<at::Tensor> g1, g2;
  model::TrainingScope training;
  for (bool ckpt : {false, true}) {
    at::manual_seed(123);
    auto loss = m->logits(m->hidden_full(ids, ckpt)).logsumexp(-1).mean();
    loss.backward();
    auto& out = ckpt ? g2 : g1;
    for (auto& p : m->lora_parameters()) {
      out.push_back(p.grad().clone());
      p.mutable_grad() = at::Tensor();
    }
  }
  ASSERT_EQ(g1.size(), g2.size());
  at::manual_seed(123);  // dropout is really on: another draw gives other gradients
  m->logits(m->hidden_full(ids, false)).logsumexp(-1).mean().backward();
  at::manual_seed(124);
  auto p0 = m->lora_parameters()[0];
  auto g_first = p0.grad().clone();
  p0.mutable_grad() = at::Tensor();
  m->logits(m->hidden_full(ids, false)).logsumexp(-1).mean().backward();
  EXPECT_FALSE(at::allclose(g_first, p0.grad(), 1e-5, 1e-6));
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_TRUE(at::allclose(g1[i], g2[i], 1e-5, 1e-6)) << i;
}
