// libtorch-facing fused ops: checks and the choice of kernel (CPU kernels, the CUDA plugin, the
// fused autograd functions, else the references in ops_ref.cpp).
#include "ops/ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include "core/error.h"
#include "kernels/cpu/fused.h"
#include "ops/cuda_plugin.h"
#include "ops/fused_autograd.h"
#include "ops/impl.h"

namespace sllm::ops {
namespace {
// Fused kernels have no backward: autograd paths use the reference ops.
bool cpu_f32(const at::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous() &&
         !(t.requires_grad() && at::GradMode::is_enabled());
}
bool cpu_bf16(const at::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == at::kBFloat16 && t.is_contiguous() &&
         !(t.requires_grad() && at::GradMode::is_enabled());
}
// Autograd records through this tensor on the CPU in fp32: the fused autograd functions apply.
bool cpu_f32_grad(const at::Tensor& t) {
  return t.device().is_cpu() && t.scalar_type() == at::kFloat && at::GradMode::is_enabled();
}
// CUDA kernels take contiguous fp32/fp16/bf16 tensors and have no backward.
bool cuda_ok(const at::Tensor& t) {
  return t.is_cuda() && t.is_contiguous() &&
         (t.scalar_type() == at::kFloat || t.scalar_type() == at::kHalf ||
          t.scalar_type() == at::kBFloat16) &&
         !(t.requires_grad() && at::GradMode::is_enabled());
}
// Grain size: enough rows per task that thread wake-up does not dominate.
int64_t grain(int64_t row_elems) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, row_elems));
}
}  // namespace

const char* impl_name(Impl impl) {
  switch (impl) {
    case Impl::reference:
      return "ops::ref";
    case Impl::cpu_kernel:
      return "CPU kernel";
    case Impl::cuda_kernel:
      return "CUDA kernel";
    case Impl::fused_autograd:
      return "fused autograd";
  }
  return "?";
}

Impl rms_norm_impl(const at::Tensor& x, const at::Tensor& weight) {
  if (cuda_ok(x) && cuda_ok(weight) && x.scalar_type() == weight.scalar_type() && cuda_ops())
    return Impl::cuda_kernel;
  if (cpu_f32_grad(x) && weight.scalar_type() == at::kFloat &&
      (x.requires_grad() || weight.requires_grad()))
    return Impl::fused_autograd;
  if ((cpu_f32(x) && cpu_f32(weight)) || (cpu_bf16(x) && cpu_bf16(weight))) return Impl::cpu_kernel;
  return Impl::reference;
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  SLLM_CHECK(x.size(-1) == weight.size(0), "rms_norm: width {} != weight {}", x.size(-1),
             weight.size(0));
  switch (rms_norm_impl(x, weight)) {
    case Impl::cuda_kernel:
      return cuda_ops()->rms_norm(x, weight, eps);
    case Impl::fused_autograd:
      return detail::rms_norm_autograd(x, weight, eps);
    case Impl::cpu_kernel:
      break;
    default:
      return ref::rms_norm(x, weight, eps);
  }
  auto out = at::empty_like(x);
  const int64_t dim = x.size(-1), rows = x.numel() / dim;
  const float e = static_cast<float>(eps);
  if (x.scalar_type() == at::kBFloat16) {
    const auto* xp = reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>());
    const auto* wp = reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>());
    auto* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
    at::parallel_for(0, rows, grain(dim), [&](int64_t r0, int64_t r1) {
      kernels::cpu::rms_norm_bf16(xp, wp, op, r0, r1, dim, e);
    });
    return out;
  }
  const float* xp = x.data_ptr<float>();
  const float* wp = weight.data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, rows, grain(dim), [&](int64_t r0, int64_t r1) {
    kernels::cpu::rms_norm_f32(xp, wp, op, r0, r1, dim, e);
  });
  return out;
}

Impl rope_impl(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (cpu_f32_grad(x) && x.requires_grad() && cos.scalar_type() == at::kFloat &&
      !cos.requires_grad() && !sin.requires_grad())
    return Impl::fused_autograd;
  const bool x_ok = x.device().is_cpu() &&
                    (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16) &&
                    !(x.requires_grad() && at::GradMode::is_enabled());
  return x_ok && cpu_f32(cos) && cpu_f32(sin) ? Impl::cpu_kernel : Impl::reference;
}

at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  SLLM_CHECK(x.dim() == 3 && cos.size(0) == x.size(0) && cos.size(1) * 2 == x.size(2),
             "rope: bad shapes x {} cos {}", c10::str(x.sizes()), c10::str(cos.sizes()));
  switch (rope_impl(x, cos, sin)) {
    case Impl::fused_autograd:
      return detail::rope_autograd(x, cos, sin);
    case Impl::cpu_kernel:
      break;
    default:
      return ref::rope(x, cos, sin);
  }
  auto out = x.contiguous();
  if (out.data_ptr() == x.data_ptr()) out = out.clone();
  const int64_t tokens = x.size(0), heads = x.size(1), hd = x.size(2);
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  if (x.scalar_type() == at::kBFloat16) {
    auto* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
    at::parallel_for(0, tokens, grain(heads * hd), [&](int64_t t0, int64_t t1) {
      kernels::cpu::rope_neox_bf16(op, cp, sp, t0, t1, heads, hd, heads * hd);
    });
    return out;
  }
  float* op = out.data_ptr<float>();
  at::parallel_for(0, tokens, grain(heads * hd), [&](int64_t t0, int64_t t1) {
    kernels::cpu::rope_neox_f32(op, cp, sp, t0, t1, heads, hd, heads * hd);
  });
  return out;
}

Impl silu_mul_impl(const at::Tensor& gu) {
  if (cuda_ok(gu) && cuda_ops()) return Impl::cuda_kernel;
  if (cpu_f32_grad(gu) && gu.requires_grad()) return Impl::fused_autograd;
  // On the CPU ATen's vectorised silu beats a scalar fused loop (bench/op_bench.cpp), so the CPU
  // runs the reference: there is no CPU kernel of ours to test.
  return Impl::reference;
}

at::Tensor silu_mul(const at::Tensor& gu) {
  switch (silu_mul_impl(gu)) {
    case Impl::cuda_kernel:
      return cuda_ops()->silu_mul(gu);
    case Impl::fused_autograd:
      return detail::silu_mul_autograd(gu);
    default:
      return ref::silu_mul(gu);
  }
}

}  // namespace sllm::ops
