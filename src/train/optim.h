// AdamW (decoupled weight decay, as torch.optim.AdamW) and the learning-rate schedules, with
// their state exposed as tensors so checkpoints can save and restore it exactly.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace sllm::train {

struct AdamWOptions {
  double lr = 2e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  AdamW(std::vector<at::Tensor> params, AdamWOptions o);
  // One update with learning rate lr for every parameter that has a gradient.
  void step(double lr);
  void zero_grad();
  int64_t steps() const { return t_; }
  // exp_avg / exp_avg_sq per parameter, for checkpoints ("m.<i>", "v.<i>").
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  void load_state(const std::vector<std::pair<std::string, at::Tensor>>& s, int64_t steps);
  const std::vector<at::Tensor>& params() const { return params_; }

 private:
  std::vector<at::Tensor> params_, m_, v_;
  AdamWOptions o_;
  int64_t t_ = 0;
};

// Learning rate at optimizer step `step` (0-based) of `total`: linear warmup from 0 over
// `warmup` steps, then "constant", "linear" (to 0) or "cosine" (to 0), as transformers'
// get_*_schedule_with_warmup.
double lr_at(const std::string& schedule, double base_lr, int64_t step, int64_t warmup,
             int64_t total);

// Scales gradients so their global L2 norm is at most max_norm (max_norm <= 0: no clipping);
// returns the norm before clipping (torch.nn.utils.clip_grad_norm_).
double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm);

}  // namespace sllm::train
