// NF4 / FP4 ops: tensor checks and the choice of kernel by device and shape (CPU: nf4_cpu.cpp,
// CUDA: the plugin, otherwise dequantize + GEMM); the references are in nf4_ref.cpp.
#include "ops/nf4.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <optional>

#include "core/error.h"
#include "ops/cuda_plugin.h"
#include "ops/quant_internal.h"

namespace sllm::ops {

using detail::check;
using detail::float_type;

void detail::check(const Nf4Tensors& w) {
  SLLM_CHECK(w.packed.defined() && w.absmax.defined() && w.code.defined(),
             "nf4: packed, absmax and code must all be set");
  SLLM_CHECK(w.out > 0 && w.in > 0 && w.blocksize > 0, "nf4: bad shape [{}, {}] / blocksize {}",
             w.out, w.in, w.blocksize);
  const int64_t n = w.out * w.in;
  SLLM_CHECK(w.packed.scalar_type() == at::kByte && w.packed.numel() == (n + 1) / 2,
             "nf4: packed must be uint8 with {} bytes for [{}, {}] (got {} {})", (n + 1) / 2, w.out,
             w.in, c10::toString(w.packed.scalar_type()), w.packed.numel());
  const int64_t blocks = (n + w.blocksize - 1) / w.blocksize;
  SLLM_CHECK(w.absmax.scalar_type() == at::kFloat && w.absmax.numel() == blocks,
             "nf4: absmax must be fp32 with {} values (got {} {})", blocks,
             c10::toString(w.absmax.scalar_type()), w.absmax.numel());
  SLLM_CHECK(w.code.scalar_type() == at::kFloat && w.code.numel() == 16,
             "nf4: code must be 16 fp32 values");
  SLLM_CHECK(w.absmax.device() == w.packed.device() && w.code.device() == w.packed.device(),
             "nf4: packed, absmax and code on different devices");
}

namespace {

// The forward without autograd: fused GEMV / small GEMM for decode-sized x, else dequantize +
// GEMM.
at::Tensor linear_nograd(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias) {
  SLLM_CHECK(x.dim() >= 1 && x.size(-1) == w.in, "nf4_linear: x {} does not end in in={}",
             c10::str(x.sizes()), w.in);
  SLLM_CHECK(x.device() == w.packed.device(), "nf4_linear: x on {} but the weight on {}",
             x.device().str(), w.packed.device().str());
  if (bias.defined())
    SLLM_CHECK(bias.numel() == w.out, "nf4_linear: bias has {} values, expected {}", bias.numel(),
               w.out);
  const int64_t rows = x.numel() / w.in;
  if (x.device().is_cpu() && float_type(x.scalar_type())) {
    auto y = detail::nf4_linear_cpu(x, w, bias, rows);
    if (y.defined()) return y;
  }
  if (x.is_cuda() && float_type(x.scalar_type()) && cuda_ops() && rows >= 1 &&
      rows <= cuda_ops()->nf4_gemv_max_rows)
    return cuda_ops()->nf4_gemv(x, w, bias);
  return at::linear(x, nf4_dequantize(w, x.scalar_type()), bias);
}

// Autograd through x (and bias). Only the packed weight (already resident) is kept for backward;
// the dense weight is rebuilt there and dropped right after.
struct Nf4LinearFn : public torch::autograd::Function<Nf4LinearFn> {
  // bias is optional: an undefined tensor may not be an input of a custom function.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const std::optional<at::Tensor>& bias, const Nf4Tensors& w) {
    ctx->saved_data["packed"] = w.packed;
    ctx->saved_data["absmax"] = w.absmax;
    ctx->saved_data["code"] = w.code;
    ctx->saved_data["out"] = w.out;
    ctx->saved_data["in"] = w.in;
    ctx->saved_data["blocksize"] = w.blocksize;
    ctx->saved_data["has_bias"] = bias.has_value();
    ctx->saved_data["bias_dtype"] =
        static_cast<int64_t>(bias ? bias->scalar_type() : x.scalar_type());
    return linear_nograd(x, w, bias ? *bias : at::Tensor());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    Nf4Tensors w;
    w.packed = ctx->saved_data["packed"].toTensor();
    w.absmax = ctx->saved_data["absmax"].toTensor();
    w.code = ctx->saved_data["code"].toTensor();
    w.out = ctx->saved_data["out"].toInt();
    w.in = ctx->saved_data["in"].toInt();
    w.blocksize = ctx->saved_data["blocksize"].toInt();
    const auto& g = grad_outputs[0];
    at::Tensor gx, gb;
    if (ctx->needs_input_grad(0)) gx = at::matmul(g, nf4_dequantize(w, g.scalar_type()));
    // needs_input_grad counts tensor inputs only: bias is input 1 when it was given
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(1))
      gb = g.reshape({-1, w.out})
               .sum(0)
               .to(static_cast<at::ScalarType>(ctx->saved_data["bias_dtype"].toInt()));
    return {gx, gb, at::Tensor()};
  }
};

}  // namespace

Nf4Tensors Nf4Tensors::to(at::Device device) const {
  Nf4Tensors r = *this;
  r.packed = packed.to(device);
  r.absmax = absmax.to(device);
  r.code = code.to(device);
  return r;
}

int64_t Nf4Tensors::nbytes() const {
  int64_t n = 0;
  for (const auto* t : {&packed, &absmax, &code})
    if (t->defined()) n += static_cast<int64_t>(t->nbytes());
  return n;
}

Nf4Tensors make_nf4_tensors(const uint8_t* packed, const float* absmax, const float* code,
                            int64_t out, int64_t in, int64_t blocksize) {
  SLLM_CHECK(out > 0 && in > 0 && blocksize > 0, "nf4: bad shape [{}, {}] / blocksize {}", out, in,
             blocksize);
  const int64_t n = out * in;
  Nf4Tensors w;
  w.packed = at::empty({(n + 1) / 2}, at::kByte);
  std::copy_n(packed, (n + 1) / 2, w.packed.data_ptr<uint8_t>());
  w.absmax = at::empty({(n + blocksize - 1) / blocksize}, at::kFloat);
  std::copy_n(absmax, w.absmax.numel(), w.absmax.data_ptr<float>());
  w.code = at::empty({16}, at::kFloat);
  std::copy_n(code, 16, w.code.data_ptr<float>());
  w.out = out;
  w.in = in;
  w.blocksize = blocksize;
  return w;
}

at::Tensor nf4_dequantize(const Nf4Tensors& w, at::ScalarType dtype) {
  check(w);
  if (w.packed.is_cuda() && cuda_ops()) {
    const at::ScalarType kt = float_type(dtype) ? dtype : at::kFloat;
    auto out = cuda_ops()->nf4_dequantize(w, kt);
    return kt == dtype ? out : out.to(dtype);
  }
  if (w.packed.device().is_cpu()) return detail::nf4_dequantize_cpu(w, dtype);
  return ref::nf4_dequantize(w, dtype);
}

at::Tensor nf4_linear(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias) {
  check(w);
  const bool bias_grad = bias.defined() && bias.requires_grad();
  if (at::GradMode::is_enabled() && (x.requires_grad() || bias_grad))
    return Nf4LinearFn::apply(x, bias.defined() ? std::optional<at::Tensor>(bias) : std::nullopt,
                              w);
  return linear_nograd(x, w, bias);
}

}  // namespace sllm::ops
