#include "train/optim.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/error.h"

namespace sllm::train {

AdamW::AdamW(std::vector<at::Tensor> params, AdamWOptions o) : params_(std::move(params)), o_(o) {
  for (const auto& p : params_) {
    m_.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
    v_.push_back(at::zeros_like(p, at::TensorOptions().dtype(at::kFloat)));
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++t_;
  const double bc1 = 1.0 - std::pow(o_.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(o_.beta2, static_cast<double>(t_));
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    if (!p.grad().defined()) continue;
    auto g = p.grad().to(at::kFloat);
    if (o_.weight_decay != 0) p.mul_(1.0 - lr * o_.weight_decay);
    m_[i].mul_(o_.beta1).add_(g, 1.0 - o_.beta1);
    v_[i].mul_(o_.beta2).addcmul_(g, g, 1.0 - o_.beta2);
    auto denom = (v_[i].sqrt() / std::sqrt(bc2)).add_(o_.eps);
    p.add_((m_[i] / denom).to(p.scalar_type()), -lr / bc1);
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) p.mutable_grad() = at::Tensor();
}

std::vector<std::pair<std::string, at::Tensor>> AdamW::state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < params_.size(); ++i) {
    out.emplace_back("m." + std::to_string(i), m_[i]);
    out.emplace_back("v." + std::to_string(i), v_[i]);
  }
  return out;
}

void AdamW::load_state(const std::vector<std::pair<std::string, at::Tensor>>& s, int64_t steps) {
  at::NoGradGuard no_grad;
  SLLM_CHECK(s.size() == 2 * params_.size(),
             "optimizer state has {} tensors, expected {} (a checkpoint of another model or "
             "adapter configuration?)",
             s.size(), 2 * params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    SLLM_CHECK(s[2 * i].second.sizes() == m_[i].sizes(),
               "optimizer state {} has shape {}, expected {}", s[2 * i].first,
               c10::str(s[2 * i].second.sizes()), c10::str(m_[i].sizes()));
    m_[i].copy_(s[2 * i].second);
    v_[i].copy_(s[2 * i + 1].second);
  }
  t_ = steps;
}

double lr_at(const std::string& schedule, double base_lr, int64_t step, int64_t warmup,
             int64_t total) {
  if (step < warmup) return base_lr * static_cast<double>(step) / std::max<int64_t>(1, warmup);
  if (schedule == "constant") return base_lr;
  const double progress = static_cast<double>(step - warmup) /
                          static_cast<double>(std::max<int64_t>(1, total - warmup));
  if (schedule == "linear") return base_lr * std::max(0.0, 1.0 - progress);
  if (schedule == "cosine") return base_lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));
  SLLM_FAIL("unknown train.scheduler '{}': use constant, linear or cosine", schedule);
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  double sq = 0;
  for (const auto& p : params)
    if (p.grad().defined()) sq += p.grad().to(at::kFloat).pow(2).sum().item<double>();
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    const double coef = max_norm / (norm + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(coef);
  }
  return norm;
}

}  // namespace sllm::train
