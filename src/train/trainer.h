// The training loop shared by `sllm sft` (LoRA or full) and `sllm qlora-train` (LoRA over NF4):
// batches of tokenized examples, masked cross-entropy on labelled positions only, gradient
// accumulation, AdamW with warmup + schedule, clipping, optional activation checkpointing,
// logging (console + train_log.jsonl), atomic checkpoints, exact resume and Ctrl-C handling.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/jsonl_dataset.h"
#include "model/llama.h"
#include "train/kd_loss.h"

namespace sllm::train {

struct TrainOptions {
  int64_t epochs = 1;
  int64_t max_steps = -1;  // > 0 overrides epochs
  int64_t batch_size = 2;
  int64_t grad_accum = 8;
  double lr = 2e-4, weight_decay = 0.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  std::string scheduler = "cosine";
  double warmup_ratio = 0.03;
  int64_t warmup_steps = -1;  // >= 0 overrides warmup_ratio
  double max_grad_norm = 1.0;
  bool grad_checkpointing = false;
  int64_t log_every = 10, save_every = 200, eval_every = 0;  // 0: eval only at the end
  int64_t save_total_limit = 2;
  uint64_t seed = 42;
  int32_t pad_id = 0;
  std::string run_dir;         // train_log.jsonl and checkpoints/ go here
  std::string resume;          // "" | "latest" | checkpoint directory
  nlohmann::json fingerprint;  // what must match for a resume (data, batch, model ...)
};

struct LogPoint {
  int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0, tokens_per_s = 0, elapsed_s = 0;
  double eval_loss = -1;              // < 0: not evaluated at this step
  double ce_loss = -1, kd_loss = -1;  // distillation: the two parts of loss (< 0: not distilling)
  uint64_t peak_rss = 0;
};

struct TrainResult {
  int64_t steps = 0, total_steps = 0;
  int64_t train_tokens = 0;  // non-pad input tokens processed in this run
  double train_seconds = 0;  // time inside optimizer steps (excludes eval and checkpoints)
  double tokens_per_s = 0;
  uint64_t peak_rss = 0;
  double final_eval_loss = -1;
  bool interrupted = false;
  std::string last_checkpoint;
  std::vector<LogPoint> log;  // the whole run's points, resumed ones included
};

// Writes the trainable state in a user-facing layout (PEFT adapter or HF model dir) into a
// directory that is being built; called for checkpoints and by the app for the final output.
using SaveFn = std::function<void(const std::string& dir)>;

// Distillation: the loss becomes (1 - ratio) * CE + ratio * KD. teacher(ids [B, T], rows) gives
// the teacher's targets at the labelled positions `rows` (indices into the flattened [B*T]),
// computed per micro-batch so no full-vocab teacher logits outlive it.
struct Distill {
  std::function<TeacherTargets(const at::Tensor& ids, const at::Tensor& rows)> teacher;
  KdOptions kd;
  double ratio = 0.5;
};

class Trainer {
 public:
  Trainer(std::shared_ptr<const model::LlamaModel> model, std::vector<at::Tensor> params,
          std::vector<data::Example> train, std::vector<data::Example> eval, TrainOptions o,
          SaveFn save_weights);
  TrainResult run();
  // Mean token cross-entropy over examples (no grad), in batches of batch_size.
  double eval_loss(const std::vector<data::Example>& ex) const;
  int64_t total_steps() const { return total_steps_; }
  void set_distill(Distill d) { distill_ = std::move(d); }

 private:
  struct Batch {
    at::Tensor ids, targets;  // [B, T], targets shifted (-100 where no loss)
    int64_t tokens = 0, target_tokens = 0;
  };
  Batch collate(const std::vector<size_t>& idx, const std::vector<data::Example>& ex) const;
  // Summed token CE over the labelled positions, and the batch's target count.
  at::Tensor loss_sum(const Batch& b) const;
  // The training loss of a micro-batch (summed) and its CE and KD parts (KD 0 without distill).
  struct Parts {
    at::Tensor total;
    double ce = 0, kd = 0;
  };
  Parts loss_parts(const Batch& b) const;
  std::vector<std::vector<size_t>> micro_batches_of_step(int64_t step) const;
  void save_checkpoint(int64_t step, class AdamW& opt, const std::vector<LogPoint>& log);
  int64_t load_checkpoint(const std::string& dir, class AdamW& opt, std::vector<LogPoint>* log);

  std::shared_ptr<const model::LlamaModel> model_;
  std::vector<at::Tensor> params_;
  std::vector<data::Example> train_, eval_;
  TrainOptions o_;
  SaveFn save_weights_;
  std::optional<Distill> distill_;
  int64_t micro_per_epoch_ = 0, steps_per_epoch_ = 0, total_steps_ = 0, warmup_ = 0;
  std::string last_checkpoint_;
};

// The newest checkpoint directory under run_dir/checkpoints, or "" when there is none.
std::string latest_checkpoint(const std::string& run_dir);

}  // namespace sllm::train
