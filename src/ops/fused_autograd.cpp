#include "ops/fused_autograd.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include "kernels/cpu/fused.h"
#include "ops/ops.h"

namespace sllm::ops::detail {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

int64_t grain(int64_t row_elems) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_elems));
}

struct RmsNormFn : torch::autograd::Function<RmsNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            double eps) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["eps"] = eps;
    return rms_norm(x.detach(), w.detach(), eps);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1];
    const double eps = ctx->saved_data["eps"].toDouble();
    auto dy = grads[0].contiguous();
    const int64_t dim = x.size(-1), rows = x.numel() / dim;
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) {
      dx = at::empty_like(x);
      const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>(), *gp = dy.data_ptr<float>();
      float* op = dx.data_ptr<float>();
      at::parallel_for(0, rows, grain(dim), [&](int64_t r0, int64_t r1) {
        kernels::cpu::rms_norm_backward_f32(xp, wp, gp, op, r0, r1, dim, static_cast<float>(eps));
      });
    }
    if (ctx->needs_input_grad(1)) {
      auto x2 = x.reshape({rows, dim});
      auto normed = x2 * at::rsqrt(x2.pow(2).mean(-1, true) + eps);
      dw = (dy.reshape({rows, dim}) * normed).sum(0);
    }
    return {dx, dw, at::Tensor()};
  }
};

struct RopeFn : torch::autograd::Function<RopeFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rope(x.detach(), cos, sin);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    // The rotation by -theta is the inverse (and the transpose) of the rotation by theta.
    return {rope(grads[0].contiguous(), saved[0], saved[1].neg()), at::Tensor(), at::Tensor()};
  }
};

struct SiluMulFn : torch::autograd::Function<SiluMulFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gu) {
    ctx->save_for_backward({gu});
    return ref::silu_mul(gu.detach());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto gu = ctx->get_saved_variables()[0].contiguous();
    auto dy = grads[0].contiguous();
    const int64_t inter = gu.size(-1) / 2, rows = gu.numel() / (2 * inter);
    auto dgu = at::empty_like(gu);
    const float *gp = gu.data_ptr<float>(), *dp = dy.data_ptr<float>();
    float* op = dgu.data_ptr<float>();
    at::parallel_for(0, rows, grain(2 * inter), [&](int64_t r0, int64_t r1) {
      kernels::cpu::silu_mul_backward_f32(gp, dp, op, r0, r1, inter);
    });
    return {dgu};
  }
};

}  // namespace

at::Tensor rms_norm_autograd(const at::Tensor& x, const at::Tensor& weight, double eps) {
  return RmsNormFn::apply(x.contiguous(), weight.contiguous(), eps);
}

at::Tensor rope_autograd(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  return RopeFn::apply(x, cos.contiguous(), sin.contiguous());
}

at::Tensor silu_mul_autograd(const at::Tensor& gu) { return SiluMulFn::apply(gu.contiguous()); }

}  // namespace sllm::ops::detail
