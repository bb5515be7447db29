// Distillation: the KD losses against an independent probability-space formula (forward KL,
// reverse KL, JSD; temperature; top-k with the rest bucket), their gradient against finite
// differences, the student cut out of a teacher, the vocabulary check, and the trainer's
// CE + KD loss with its two logged parts.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <unistd.h>

#include "apps/distill_student.h"
#include "core/error.h"
#include "tiny_model.h"
#include "train/kd_loss.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace sllm;

namespace {

// Reference: probabilities (not log-space), buckets picked by a full descending sort, divergences
// summed term by term in double.
double reference_kd(const at::Tensor& student, const at::Tensor& teacher, const std::string& kind,
                    double T, int64_t k) {
  const int64_t N = student.size(0), V = student.size(1);
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    auto ps = at::softmax(student[n].to(at::kDouble) / T, 0);
    auto pt = at::softmax(teacher[n].to(at::kDouble) / T, 0);
    std::vector<double> P, Q;
    if (k <= 0 || k >= V) {
      for (int64_t v = 0; v < V; ++v) {
        P.push_back(pt[v].item<double>());
        Q.push_back(ps[v].item<double>());
      }
    } else {
      auto order = at::argsort(teacher[n], /*dim=*/0, /*descending=*/true);
      double restP = 1, restQ = 1;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t v = order[j].item<int64_t>();
        P.push_back(pt[v].item<double>());
        Q.push_back(ps[v].item<double>());
        restP -= P.back();
        restQ -= Q.back();
      }
      P.push_back(std::max(restP, 0.0));
      Q.push_back(std::max(restQ, 0.0));
    }
    auto kl = [](const std::vector<double>& a, const std::vector<double>& b) {
      double s = 0;
      for (size_t i = 0; i < a.size(); ++i)
        if (a[i] > 0) s += a[i] * std::log(a[i] / b[i]);
      return s;
    };
    if (kind == "forward_kl") {
      total += kl(P, Q);
    } else if (kind == "reverse_kl") {
      total += kl(Q, P);
    } else {
      std::vector<double> M(P.size());
      for (size_t i = 0; i < P.size(); ++i) M[i] = 0.5 * (P[i] + Q[i]);
      total += 0.5 * kl(P, M) + 0.5 * kl(Q, M);
    }
  }
  return total * T * T;
}

}  // namespace

TEST(KdLoss, MatchesTheProbabilityFormula) {
  at::manual_seed(3);
  const int64_t N = 6, V = 23;
  auto s = at::randn({N, V}) * 2, t = at::randn({N, V}) * 3;
  for (const std::string kind : {"forward_kl", "reverse_kl", "jsd"})
    for (const double T : {1.0, 2.5})
      for (const int64_t k : {0, 1, 5, 22, 23}) {
        train::KdOptions o{kind, T, k};
        const double got = train::kd_loss_sum(s, train::teacher_targets(t, o), o).item<double>();
        const double want = reference_kd(s, t, kind, T, k);
        EXPECT_NEAR(got, want, 1e-4 * std::max(1.0, std::abs(want)))  // fp32 sums
            << kind << " T=" << T << " k=" << k;
        EXPECT_GT(want, 0.0);
      }
  // Identical distributions: zero for every kind.
  for (const std::string kind : {"forward_kl", "reverse_kl", "jsd"}) {
    train::KdOptions o{kind, 2.0, 4};
    EXPECT_NEAR(train::kd_loss_sum(t, train::teacher_targets(t, o), o).item<double>(), 0.0, 1e-5);
  }
}

TEST(KdLoss, GradientMatchesFiniteDifferences) {
  at::manual_seed(5);
  const int64_t N = 3, V = 9;
  auto t = at::randn({N, V}, at::kDouble) * 2;
  for (const std::string kind : {"forward_kl", "reverse_kl", "jsd"})
    for (const int64_t k : {0, 3}) {
      train::KdOptions o{kind, 1.7, k};
      const auto targets = train::teacher_targets(t, o);
      auto s = (at::randn({N, V}, at::kDouble) * 2).requires_grad_(true);
      train::kd_loss_sum(s, targets, o).backward();
      auto grad = s.grad();
      at::NoGradGuard no_grad;
      const double h = 1e-6;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t v = 0; v < V; ++v) {
          auto plus = s.detach().clone(), minus = s.detach().clone();
          plus[n][v] += h;
          minus[n][v] -= h;
          const double fd = (train::kd_loss_sum(plus, targets, o).item<double>() -
                             train::kd_loss_sum(minus, targets, o).item<double>()) /
                            (2 * h);
          EXPECT_NEAR(grad[n][v].item<double>(), fd, 1e-6) << kind << " k=" << k;
        }
    }
}

TEST(KdLoss, RejectsBadOptions) {
  EXPECT_THROW(train::validate({"kl", 1.0, 0}), Error);
  EXPECT_THROW(train::validate({"jsd", 0.0, 0}), Error);
  EXPECT_THROW(train::validate({"jsd", 1.0, -1}), Error);
}

TEST(StudentInit, KeepsLayersAndImportantUnits) {
  auto c = fixtures::tiny_config();
  c.num_layers = 4;
  auto teacher = fixtures::tiny_model(c, 11);
  auto ids = at::randint(0, 256, {2, 7}, at::kLong);
  // Every layer at full width: the same model, as a copy.
  auto same = apps::student_from_teacher(*teacher, {0, 1, 2, 3}, 0);
  EXPECT_TRUE(at::allclose(same->forward_full(ids), teacher->forward_full(ids), 1e-5, 1e-5));
  EXPECT_FALSE(
      same->layers()[0].qkv.dense_weight().is_same(teacher->layers()[0].qkv.dense_weight()));

  auto layers = apps::student_layers({{"every_k", 2}}, 4);
  ASSERT_EQ(layers, (std::vector<int64_t>{0, 2}));
  // Zero one MLP unit of layer 2: it is the one a width of I - 1 drops.
  const int64_t I = c.intermediate_size, dead = 17;
  {
    at::NoGradGuard g;
    teacher->layers()[2].down.dense_weight().select(1, dead).zero_();
  }
  auto s = apps::student_from_teacher(*teacher, layers, I - 1);
  EXPECT_EQ(s->config().num_layers, 2);
  EXPECT_EQ(s->config().intermediate_size, I - 1);
  const auto& S = s->layers()[1];
  const auto& L = teacher->layers()[2];
  auto keep = at::cat({at::arange(dead), at::arange(dead + 1, I)});
  EXPECT_TRUE(S.down.dense_weight().equal(L.down.dense_weight().index_select(1, keep)));
  EXPECT_TRUE(S.gate_up.dense_weight()
                  .narrow(0, I - 1, I - 1)
                  .equal(L.gate_up.dense_weight().narrow(0, I, I).index_select(0, keep)));
  EXPECT_TRUE(s->layers()[0].qkv.dense_weight().equal(teacher->layers()[0].qkv.dense_weight()));
  EXPECT_EQ(s->forward_full(ids).sizes(), teacher->forward_full(ids).sizes());
}

TEST(StudentInit, BadLayerSpecsAreClearErrors) {
  auto expect_error = [](const nlohmann::json& spec, const std::string& want) {
    try {
      apps::student_layers(spec, 30);
      ADD_FAILURE() << spec.dump() << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  };
  expect_error(nlohmann::json::array({0, 30}), "layer 30 is out of range: the teacher has 30");
  expect_error(nlohmann::json::array({3, 3}), "strictly increasing");
  expect_error({{"every_k", 0}}, "every_k");
  expect_error("half", "every_k");
  EXPECT_EQ(apps::student_layers(nlohmann::json::array({1, 29}), 30).size(), 2u);
}

TEST(StudentInit, DifferentVocabularyIsAClearError) {
  auto tok = fixtures::tiny_tokenizer();
  auto c = fixtures::tiny_config(), d = c;
  EXPECT_NO_THROW(apps::check_same_vocabulary(*tok, c, "t", *tok, d, "s"));
  d.vocab_size += 1;
  try {
    apps::check_same_vocabulary(*tok, c, "t", *tok, d, "s");
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("same tokenizer"), std::string::npos) << e.what();
  }
}

TEST(Trainer, DistillLogsCeAndKdParts) {
  const auto dir =
      (fs::temp_directory_path() / ("sllm_distill_" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto c = fixtures::tiny_config();
  c.num_layers = 4;
  std::shared_ptr<const model::LlamaModel> teacher = fixtures::tiny_model(c, 2);
  auto student = apps::student_from_teacher(*teacher, {0, 3}, 64);
  std::vector<data::Example> ex;
  at::manual_seed(1);
  for (int i = 0; i < 4; ++i) {
    data::Example e;
    for (int t = 0; t < 9; ++t) {
      e.ids.push_back(static_cast<int32_t>(at::randint(0, 256, {1}).item<int64_t>()));
      e.labels.push_back(t < 3 ? data::kIgnore : e.ids.back());
    }
    ex.push_back(e);
  }
  train::TrainOptions o;
  o.max_steps = 3;
  o.batch_size = 2;
  o.grad_accum = 2;
  o.lr = 1e-3;
  o.log_every = 1;
  o.save_every = 0;
  o.run_dir = dir;
  auto params = student->dense_parameters();
  for (auto& p : params) p.requires_grad_(true);
  train::Trainer tr(student, params, ex, {}, o, nullptr);
  const train::KdOptions kd{"forward_kl", 2.0, 8};
  const double ratio = 0.7;
  int calls = 0;
  tr.set_distill({[&](const at::Tensor& ids, const at::Tensor& rows) {
                    ++calls;
                    at::NoGradGuard g;
                    auto h = teacher->hidden_full(ids);
                    auto l = teacher->logits(h.reshape({-1, h.size(-1)}).index_select(0, rows));
                    return train::teacher_targets(l, kd);
                  },
                  kd, ratio});
  auto res = tr.run();
  EXPECT_EQ(calls, 6);  // one teacher forward per micro-batch
  ASSERT_EQ(res.log.size(), 3u);
  for (const auto& p : res.log) {
    EXPECT_GT(p.ce_loss, 0);
    EXPECT_GT(p.kd_loss, 0);
    EXPECT_NEAR(p.loss, (1 - ratio) * p.ce_loss + ratio * p.kd_loss, 1e-5);
  }
  EXPECT_LT(res.log.back().kd_loss, res.log.front().kd_loss);
  fs::remove_all(dir);
}
