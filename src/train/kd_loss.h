// Knowledge-distillation losses between a student's and a frozen teacher's next-token
// distributions: forward KL(teacher || student), reverse KL(student || teacher) and the
// symmetric Jensen-Shannon divergence, at a temperature T and scaled by T^2 (Hinton et al.), so
// the gradient size does not shrink as T grows.
//
// Top-k: only the teacher's k most likely tokens per position are kept, plus one "rest" bucket
// holding the remaining probability mass. Both distributions are compared over these k + 1
// buckets, so the loss is exact for the coarse-grained distributions and equals the full-vocab
// loss when k >= vocab (or k = 0). The teacher's full-vocab logits are needed only while
// teacher_targets runs.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace sllm::train {

struct KdOptions {
  std::string kind = "forward_kl";  // forward_kl | reverse_kl | jsd
  double temperature = 1.0;
  int64_t top_k = 0;  // 0: the whole vocabulary
};

// Checks kind, temperature and top_k; errors name the config keys.
void validate(const KdOptions& o);

// The teacher's side of the loss for N positions.
struct TeacherTargets {
  at::Tensor log_probs;  // [N, k (+1 rest bucket when k < vocab)] at temperature T, fp32
  at::Tensor indices;    // [N, k] token ids of the kept buckets; undefined: the whole vocabulary
};

// Teacher logits [N, vocab] -> targets (no grad; the logits can be freed afterwards).
TeacherTargets teacher_targets(const at::Tensor& teacher_logits, const KdOptions& o);

// Summed (over positions) KD loss of student logits [N, vocab] against the targets, T^2-scaled.
at::Tensor kd_loss_sum(const at::Tensor& student_logits, const TeacherTargets& t,
                       const KdOptions& o);

}  // namespace sllm::train
