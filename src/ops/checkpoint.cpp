#include "ops/checkpoint.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

namespace sllm::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Fn = std::function<at::Tensor(const at::Tensor&)>;

// Keeps the function alive inside the autograd graph until backward has run.
struct FnHolder : torch::CustomClassHolder {
  explicit FnHolder(Fn f) : fn(std::move(f)) {}
  Fn fn;
};

struct Checkpoint : public torch::autograd::Function<Checkpoint> {
  static at::Tensor forward(AutogradContext* ctx, at::Tensor x, Fn fn) {
    auto holder = c10::make_intrusive<FnHolder>(std::move(fn));
    const Fn& f = holder->fn;
    ctx->saved_data["fn"] = c10::IValue::make_capsule(holder);
    ctx->saved_data["rng"] = at::detail::getDefaultCPUGenerator().get_state();
    ctx->save_for_backward({x});
    at::NoGradGuard no_grad;
    return f(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto blob = ctx->saved_data["fn"].toCapsule();
    const Fn& fn = static_cast<FnHolder*>(blob.get())->fn;
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto gen = at::detail::getDefaultCPUGenerator();
    const auto now = gen.get_state();
    gen.set_state(ctx->saved_data["rng"].toTensor());
    at::Tensor y;
    {
      at::AutoGradMode enable(true);
      y = fn(x);
    }
    gen.set_state(now);
    torch::autograd::backward({y}, {grads[0]});
    return {x.grad(), at::Tensor()};
  }
};

}  // namespace

at::Tensor checkpoint(const std::function<at::Tensor(const at::Tensor&)>& fn, const at::Tensor& x) {
  if (!at::GradMode::is_enabled()) return fn(x);
  return Checkpoint::apply(x.requires_grad() ? x : x.detach().requires_grad_(true), fn);
}

}  // namespace sllm::ops
