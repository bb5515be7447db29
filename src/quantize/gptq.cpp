#include "quantize/gptq.h"

#include <ATen/ATen.h>

#include "core/error.h"
#include "core/log.h"

namespace sllm::quantize {
namespace {

// Per-row scale and zero of one group (GPTQ's quantizer: the range always includes 0; a row of
// zeros gets [-1, 1]). Scales are fp16-rounded, as every checkpoint format stores them.
struct GroupParams {
  at::Tensor scale, zero;  // fp32 [out]
};

GroupParams find_params(const at::Tensor& x, int bits, bool sym) {
  const double maxq = (1 << bits) - 1;
  auto xmin = at::clamp_max(std::get<0>(x.min(1)), 0.0);
  auto xmax = at::clamp_min(std::get<0>(x.max(1)), 0.0);
  if (sym) {
    xmax = at::maximum(xmin.abs(), xmax);
    xmin = at::where(xmin < 0, -xmax, xmin);
  }
  auto both_zero = (xmin == 0).logical_and(xmax == 0);
  xmin = at::where(both_zero, at::full_like(xmin, -1.0), xmin);
  xmax = at::where(both_zero, at::full_like(xmax, 1.0), xmax);
  auto scale = ((xmax - xmin) / maxq).to(at::kHalf).to(at::kFloat).clamp_min(5.9604645e-8);
  auto zero = sym ? at::full_like(scale, static_cast<double>(1 << (bits - 1)))
                  : (-xmin / scale).round().clamp(0, maxq);
  return {scale, zero};
}

at::Tensor quantize_column(const at::Tensor& w, const GroupParams& p, int bits) {
  return (w / p.scale).round().add(p.zero).clamp(0, (1 << bits) - 1);
}

// Upper Cholesky factor of H^-1 after dampening; the dampening grows tenfold on failure.
at::Tensor inverse_cholesky(at::Tensor h, double damp) {
  const auto diag_mean = h.diagonal().mean().item<double>();
  for (int attempt = 0; attempt < 6; ++attempt, damp *= 10) {
    auto hd = h.clone();
    hd.diagonal().add_(damp * diag_mean);
    auto [l, info] = at::linalg_cholesky_ex(hd.to(at::kDouble));
    if (info.item<int64_t>() == 0) {
      auto inv = at::cholesky_inverse(l);
      auto [u, info2] = at::linalg_cholesky_ex(inv, /*upper=*/true);
      if (info2.item<int64_t>() == 0) {
        if (attempt > 0) log::warn("GPTQ: Hessian needed dampening {} to factorise", damp);
        return u.to(at::kFloat);
      }
    }
  }
  SLLM_FAIL(
      "GPTQ: the Hessian cannot be factorised even with dampening {}; the calibration data "
      "is too small or degenerate for this layer: give more calibration tokens",
      damp);
}

}  // namespace

Hessian::Hessian(int64_t in) : h_(at::zeros({in, in}, at::kFloat)) {}

void Hessian::add(const at::Tensor& x) {
  auto x2 = x.reshape({-1, x.size(-1)}).to(h_.device(), at::kFloat);
  const int64_t m = x2.size(0);
  if (m == 0) return;
  // Running mean keeps the magnitude independent of how many samples were seen (as GPTQ does).
  h_.mul_(static_cast<double>(n_) / static_cast<double>(n_ + m));
  n_ += m;
  const double k = std::sqrt(2.0 / static_cast<double>(n_));
  auto xs = x2 * k;
  h_.addmm_(xs.t(), xs);
}

quant::IntQWeight gptq_quantize(const at::Tensor& w_in, const at::Tensor& h_in,
                                const GptqOptions& o, double* loss_out) {
  SLLM_CHECK(o.bits >= 2 && o.bits <= 8, "GPTQ bits must be 2..8, got {}", o.bits);
  const int64_t out = w_in.size(0), in = w_in.size(1);
  const int64_t gs = o.group_size <= 0 ? in : o.group_size;  // the last group may be partial
  const int64_t groups = (in + gs - 1) / gs;
  auto w = w_in.to(at::kFloat).clone();
  auto h = h_in.to(at::kFloat).clone();
  auto dead = h.diagonal() == 0;
  h.diagonal().masked_fill_(dead, 1.0);
  w.index_put_({at::indexing::Slice(), dead}, 0.0);

  std::vector<GroupParams> static_params;
  if (o.static_groups)
    for (int64_t g = 0; g < groups; ++g)
      static_params.push_back(
          find_params(w.narrow(1, g * gs, std::min(gs, in - g * gs)), o.bits, o.sym));

  at::Tensor perm;
  if (o.act_order) {
    perm = at::argsort(h.diagonal(), /*stable=*/true, /*dim=*/0, /*descending=*/true);
    w = w.index_select(1, perm);
    h = h.index_select(0, perm).index_select(1, perm);
  }
  auto hinv = inverse_cholesky(h, o.damp);

  auto q = at::zeros({out, in}, at::kFloat);  // integer values, permuted column order
  auto scales = at::zeros({out, groups}, at::kFloat), zeros = at::zeros({out, groups}, at::kFloat);
  const int64_t* pp = perm.defined() ? perm.data_ptr<int64_t>() : nullptr;
  double loss = 0;
  GroupParams cur;
  for (int64_t i1 = 0; i1 < in; i1 += o.block) {
    const int64_t i2 = std::min(i1 + o.block, in), count = i2 - i1;
    auto w1 = w.narrow(1, i1, count).clone();
    auto err1 = at::zeros_like(w1);
    auto hinv1 = hinv.narrow(0, i1, count).narrow(1, i1, count);
    for (int64_t i = 0; i < count; ++i) {
      const int64_t col = i1 + i;
      int64_t g;
      if (o.static_groups) {
        g = (pp ? pp[col] : col) / gs;
        cur = static_params[g];
      } else {
        g = col / gs;
        if (col % gs == 0) {  // a new group: its parameters from the current (updated) columns
          auto cols = at::cat({w1.narrow(1, i, count - i), w.narrow(1, i2, in - i2)}, 1);
          cur = find_params(cols.narrow(1, 0, std::min(gs, in - col)), o.bits, o.sym);
          scales.select(1, g).copy_(cur.scale);
          zeros.select(1, g).copy_(cur.zero);
        }
      }
      auto wc = w1.select(1, i);
      auto qc = quantize_column(wc, cur, o.bits);
      q.select(1, col).copy_(qc);
      auto dq = (qc - cur.zero) * cur.scale;
      const double d = hinv1[i][i].item<double>();
      auto e = (wc - dq) / d;
      loss += 0.5 * e.square().sum().item<double>();
      w1.narrow(1, i, count - i)
          .sub_(e.unsqueeze(1) * hinv1[i].narrow(0, i, count - i).unsqueeze(0));
      err1.select(1, i).copy_(e);
    }
    if (i2 < in)
      w.narrow(1, i2, in - i2).sub_(err1.matmul(hinv.narrow(0, i1, count).narrow(1, i2, in - i2)));
  }
  if (o.static_groups) {
    for (int64_t g = 0; g < groups; ++g) {
      scales.select(1, g).copy_(static_params[g].scale);
      zeros.select(1, g).copy_(static_params[g].zero);
    }
  }

  quant::IntQWeight r;
  r.bits = o.bits;
  r.group_size = gs;
  r.out = out;
  r.in = in;
  r.sym = o.sym;
  if (perm.defined()) {  // back to the original column order
    auto inv = at::empty_like(q);
    inv.index_copy_(1, perm, q);
    q = inv;
    if (!o.static_groups) {
      r.g_idx.resize(in);
      for (int64_t j = 0; j < in; ++j) r.g_idx[pp[j]] = static_cast<int32_t>(j / gs);
    }
  }
  auto qb = q.to(at::kByte).contiguous();
  r.q.assign(qb.data_ptr<uint8_t>(), qb.data_ptr<uint8_t>() + qb.numel());
  scales = scales.contiguous();
  zeros = zeros.contiguous();
  r.scales.assign(scales.data_ptr<float>(), scales.data_ptr<float>() + scales.numel());
  r.zeros.assign(zeros.data_ptr<float>(), zeros.data_ptr<float>() + zeros.numel());
  if (loss_out) *loss_out = loss;
  return r;
}

}  // namespace sllm::quantize
