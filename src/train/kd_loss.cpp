#include "train/kd_loss.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace sllm::train {
namespace {

// Log-probabilities of logits [N, V] over the k kept tokens plus the rest bucket (log-space:
// the rest is a logsumexp over the masked-out tokens, exact even when its mass is tiny).
at::Tensor bucket_log_probs(const at::Tensor& scaled, const at::Tensor& indices) {
  auto lse = scaled.logsumexp(-1, /*keepdim=*/true);
  auto kept = scaled.gather(-1, indices) - lse;
  if (indices.size(-1) >= scaled.size(-1)) return kept;
  auto rest = scaled.scatter(-1, indices, -std::numeric_limits<double>::infinity())
                  .logsumexp(-1, /*keepdim=*/true) -
              lse;
  return at::cat({kept, rest}, -1);
}

// sum_i exp(a_i) (a_i - b_i) per row, with 0 * log 0 = 0 for empty buckets.
at::Tensor kl_rows(const at::Tensor& log_p, const at::Tensor& log_q) {
  auto p = log_p.exp();
  return at::where(p > 0, p * (log_p - log_q), at::zeros_like(p)).sum(-1);
}

// fp32 (or fp64, kept for gradient checks) whatever the model computes in.
at::Tensor wide(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? x : x.to(at::kFloat);
}

}  // namespace

void validate(const KdOptions& o) {
  SLLM_CHECK(o.kind == "forward_kl" || o.kind == "reverse_kl" || o.kind == "jsd",
             "loss.kind must be forward_kl, reverse_kl or jsd (got '{}')", o.kind);
  SLLM_CHECK(o.temperature > 0 && std::isfinite(o.temperature),
             "loss.temperature must be positive (got {})", o.temperature);
  SLLM_CHECK(o.top_k >= 0, "loss.top_k must be 0 (whole vocabulary) or positive (got {})", o.top_k);
}

TeacherTargets teacher_targets(const at::Tensor& teacher_logits, const KdOptions& o) {
  at::NoGradGuard no_grad;
  auto scaled = wide(teacher_logits) / o.temperature;
  const int64_t V = scaled.size(-1);
  TeacherTargets t;
  if (o.top_k <= 0 || o.top_k >= V) {
    t.log_probs = at::log_softmax(scaled, -1);
    return t;
  }
  t.indices = std::get<1>(scaled.topk(o.top_k, -1));
  t.log_probs = bucket_log_probs(scaled, t.indices);
  return t;
}

at::Tensor kd_loss_sum(const at::Tensor& student_logits, const TeacherTargets& t,
                       const KdOptions& o) {
  auto scaled = wide(student_logits) / o.temperature;
  auto log_q =
      t.indices.defined() ? bucket_log_probs(scaled, t.indices) : at::log_softmax(scaled, -1);
  const auto& log_p = t.log_probs;
  SLLM_CHECK(log_q.sizes() == log_p.sizes(), "KD: student buckets {} vs teacher buckets {}",
             c10::str(log_q.sizes()), c10::str(log_p.sizes()));
  at::Tensor rows;
  if (o.kind == "forward_kl") {
    rows = kl_rows(log_p, log_q);
  } else if (o.kind == "reverse_kl") {
    rows = kl_rows(log_q, log_p);
  } else {
    // log m = log((p + q) / 2), computed stably.
    auto log_m = at::logaddexp(log_p, log_q) - std::log(2.0);
    rows = 0.5 * kl_rows(log_p, log_m) + 0.5 * kl_rows(log_q, log_m);
  }
  return rows.sum() * (o.temperature * o.temperature);
}

}  // namespace sllm::train
