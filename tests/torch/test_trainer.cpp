// Trainer pieces: AdamW against torch.optim.AdamW's formula, schedules, clipping, the loop
// (loss goes down, labels masked), checkpoints and exact resume.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "lora/lora.h"
#include "tiny_model.h"
#include "train/optim.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace sllm;

TEST(AdamW, MatchesTheTorchFormula) {
  auto p = at::tensor({1.0f, -2.0f, 0.5f}).requires_grad_(true);
  train::AdamW opt({p}, {0.1, 0.9, 0.999, 1e-8, 0.01});
  // Two steps with known gradients, computed by hand with torch.optim.AdamW's update.
  double ref[3] = {1.0, -2.0, 0.5}, m[3] = {0, 0, 0}, v[3] = {0, 0, 0};
  const double grads[2][3] = {{0.5, -1.0, 2.0}, {0.1, 0.3, -0.2}};
  for (int t = 1; t <= 2; ++t) {
    p.mutable_grad() =
        at::tensor({float(grads[t - 1][0]), float(grads[t - 1][1]), float(grads[t - 1][2])});
    opt.step(0.1);
    for (int i = 0; i < 3; ++i) {
      ref[i] *= 1 - 0.1 * 0.01;
      m[i] = 0.9 * m[i] + 0.1 * grads[t - 1][i];
      v[i] = 0.999 * v[i] + 0.001 * grads[t - 1][i] * grads[t - 1][i];
      const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.999, t));
      ref[i] -= 0.1 * mh / (std::sqrt(vh) + 1e-8);
    }
  }
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(p[i].item<double>(), ref[i], 1e-6);
}

TEST(Schedule, WarmupThenDecay) {
  EXPECT_DOUBLE_EQ(train::lr_at("cosine", 1.0, 0, 10, 100), 0.0);
  EXPECT_DOUBLE_EQ(train::lr_at("cosine", 1.0, 5, 10, 100), 0.5);
  EXPECT_DOUBLE_EQ(train::lr_at("cosine", 1.0, 10, 10, 100), 1.0);
  EXPECT_NEAR(train::lr_at("cosine", 1.0, 55, 10, 100), 0.5, 1e-12);
  EXPECT_NEAR(train::lr_at("linear", 1.0, 55, 10, 100), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(train::lr_at("constant", 2.0, 90, 10, 100), 2.0);
  EXPECT_THROW(train::lr_at("exp", 1.0, 1, 0, 10), Error);
}

TEST(ClipGradNorm, ScalesToMaxNorm) {
  auto a = at::zeros({2}).requires_grad_(true), b = at::zeros({1}).requires_grad_(true);
  a.mutable_grad() = at::tensor({3.0f, 0.0f});
  b.mutable_grad() = at::tensor({4.0f});
  EXPECT_NEAR(train::clip_grad_norm({a, b}, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-5);
  EXPECT_NEAR(b.grad()[0].item<double>(), 0.8, 1e-5);
}

namespace {

std::vector<data::Example> toy_examples() {
  // "prompt" bytes masked, "answer" bytes + EOS labelled.
  std::vector<data::Example> ex;
  for (int i = 0; i < 6; ++i) {
    data::Example e;
    for (int t = 0; t < 6; ++t) {
      e.ids.push_back(10 + i + t);
      e.labels.push_back(data::kIgnore);
    }
    for (int t = 0; t < 4; ++t) {
      e.ids.push_back(100 + (i % 2) * 7 + t);
      e.labels.push_back(e.ids.back());
    }
    e.ids.push_back(256);
    e.labels.push_back(256);
    ex.push_back(e);
  }
  return ex;
}

struct Run {
  std::shared_ptr<model::LlamaModel> model;
  train::TrainOptions o;
};

Run make_run(const std::string& dir, int64_t steps) {
  auto base = fixtures::tiny_model(fixtures::tiny_config());
  lora::LoraConfig c;
  c.r = 4;
  c.dropout = 0.1;
  Run r{lora::inject(*base, c, 1), {}};
  r.o.max_steps = steps;
  r.o.batch_size = 2;
  r.o.grad_accum = 2;
  r.o.lr = 5e-3;
  r.o.log_every = 1;
  r.o.save_every = 2;
  r.o.save_total_limit = 0;
  r.o.warmup_steps = 1;
  r.o.run_dir = dir;
  return r;
}

}  // namespace

TEST(Trainer, LossGoesDownAndResumeIsExact) {
  const auto dir =
      (fs::temp_directory_path() / ("sllm_trainer_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto r1 = make_run(dir + "/a", 6);
  fs::create_directories(r1.o.run_dir);
  at::manual_seed(7);
  train::Trainer t1(r1.model, r1.model->lora_parameters(), toy_examples(), toy_examples(), r1.o,
                    nullptr);
  EXPECT_EQ(t1.total_steps(), 6);
  const double before = t1.eval_loss(toy_examples());
  auto res1 = t1.run();
  ASSERT_EQ(res1.log.size(), 6u);
  EXPECT_LT(res1.final_eval_loss, before);
  EXPECT_TRUE(fs::exists(dir + "/a/checkpoints/step-000002/trainable.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/a/checkpoints/step-000006/optimizer.safetensors"));

  // A fresh process state resumed from step 2 reproduces steps 3..6 exactly.
  auto r2 = make_run(dir + "/a", 6);
  r2.o.resume = dir + "/a/checkpoints/step-000002";
  at::manual_seed(999);  // resume must restore the RNG itself
  train::Trainer t2(r2.model, r2.model->lora_parameters(), toy_examples(), toy_examples(), r2.o,
                    nullptr);
  auto res2 = t2.run();
  ASSERT_EQ(res2.log.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(res2.log[i].step, res1.log[i].step);
    EXPECT_DOUBLE_EQ(res2.log[i].loss, res1.log[i].loss) << "step " << i + 1;
  }
  EXPECT_DOUBLE_EQ(res2.final_eval_loss, res1.final_eval_loss);
  EXPECT_EQ(train::latest_checkpoint(dir + "/a"), dir + "/a/checkpoints/step-000006");
  fs::remove_all(dir);
}

TEST(Trainer, RejectsBadOptions) {
  auto r = make_run("/tmp/unused", 2);
  r.o.lr = 0;
  EXPECT_THROW(
      train::Trainer(r.model, r.model->lora_parameters(), toy_examples(), {}, r.o, nullptr), Error);
  r = make_run("/tmp/unused", 2);
  r.o.batch_size = 0;
  EXPECT_THROW(
      train::Trainer(r.model, r.model->lora_parameters(), toy_examples(), {}, r.o, nullptr), Error);
  r = make_run("/tmp/unused", 2);
  EXPECT_THROW(train::Trainer(r.model, r.model->lora_parameters(), {}, {}, r.o, nullptr), Error);
}
