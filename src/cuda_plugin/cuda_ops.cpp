// The CUDA plugin (libsllm_cuda_ops.so): libtorch-facing wrappers around kernels/cuda. Loaded
// by ops::cuda_ops() only when a CUDA device is used; the checks that pick these paths (device,
// dtype, contiguity) stay in src/ops, so every function here may assume valid CUDA inputs.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>

#include "core/error.h"
#include "kernels/cuda/fused.h"
#include "kernels/cuda/gguf.h"
#include "kernels/cuda/intq.h"
#include "kernels/cuda/nf4.h"
#include "ops/cuda_plugin.h"

namespace sllm::ops {
namespace {

namespace kc = kernels::cuda;

kc::DType dtype_of(at::ScalarType t) {
  return t == at::kFloat ? kc::DType::f32 : t == at::kHalf ? kc::DType::f16 : kc::DType::bf16;
}

void check_launch(int rc, const char* what) {
  SLLM_CHECK(rc == 0, "CUDA kernel {} failed to launch (cudaError {})", what, rc);
}

void* stream() { return at::cuda::getCurrentCUDAStream().stream(); }

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty_like(x);
  const int64_t dim = x.size(-1);
  check_launch(kc::rms_norm(x.data_ptr(), w.data_ptr(), out.data_ptr(), x.numel() / dim, dim,
                            static_cast<float>(eps), dtype_of(x.scalar_type()), stream()),
               "rms_norm");
  return out;
}

at::Tensor silu_mul(const at::Tensor& gu) {
  c10::cuda::CUDAGuard guard(gu.device());
  auto sizes = gu.sizes().vec();
  const int64_t inter = sizes.back() / 2;
  sizes.back() = inter;
  auto out = at::empty(sizes, gu.options());
  check_launch(kc::silu_mul(gu.data_ptr(), out.data_ptr(), gu.numel() / (2 * inter), inter,
                            dtype_of(gu.scalar_type()), stream()),
               "silu_mul");
  return out;
}

at::Tensor nf4_dequantize(const Nf4Tensors& w, at::ScalarType dtype) {
  c10::cuda::CUDAGuard guard(w.packed.device());
  auto out = at::empty({w.out, w.in}, w.packed.options().dtype(dtype));
  check_launch(kc::nf4_dequantize(w.packed.data_ptr<uint8_t>(), w.absmax.data_ptr<float>(),
                                  w.code.data_ptr<float>(), w.out * w.in, w.blocksize,
                                  out.data_ptr(), dtype_of(dtype), stream()),
               "nf4_dequantize");
  return out;
}

at::Tensor nf4_gemv(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias) {
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  at::Tensor bc;
  if (bias.defined()) bc = bias.reshape({w.out}).to(x.scalar_type()).contiguous();
  auto sizes = x.sizes().vec();
  sizes.back() = w.out;
  auto y = at::empty(sizes, x.options());
  check_launch(kc::nf4_gemv(w.packed.data_ptr<uint8_t>(), w.absmax.data_ptr<float>(),
                            w.code.data_ptr<float>(), w.blocksize, xc.data_ptr(),
                            bc.defined() ? bc.data_ptr() : nullptr, y.data_ptr(), x.numel() / w.in,
                            w.out, w.in, dtype_of(x.scalar_type()), stream()),
               "nf4_gemv");
  return y;
}

at::Tensor intq_dequantize(const IntQTensors& w, at::ScalarType dtype) {
  c10::cuda::CUDAGuard guard(w.qweight.device());
  auto q = w.qweight.contiguous(), s = w.scales.contiguous(), z = w.zeros.contiguous();
  at::Tensor perm;
  if (w.perm.defined()) perm = w.perm.contiguous();
  auto out = at::empty({w.out, w.in}, w.qweight.options().dtype(dtype));
  check_launch(
      kc::intq_dequantize(q.data_ptr<uint8_t>(), s.data_ptr<float>(), z.data_ptr<float>(),
                          perm.defined() ? perm.data_ptr<int64_t>() : nullptr, w.storage_bits(),
                          w.group_size, w.out, w.in, out.data_ptr(), dtype_of(dtype), stream()),
      "intq_dequantize");
  return out;
}

at::Tensor intq_gemv(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias) {
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous();
  auto q = w.qweight.contiguous(), s = w.scales.contiguous(), z = w.zeros.contiguous();
  at::Tensor bc;
  if (bias.defined()) bc = bias.reshape({w.out}).to(x.scalar_type()).contiguous();
  const int64_t rows = x.numel() / w.in;
  auto y = at::empty({rows, w.out}, x.options());
  check_launch(kc::intq_gemv(q.data_ptr<uint8_t>(), s.data_ptr<float>(), z.data_ptr<float>(),
                             w.storage_bits(), w.group_size, xc.data_ptr(),
                             bc.defined() ? bc.data_ptr() : nullptr, y.data_ptr(), rows, w.out,
                             w.in, dtype_of(x.scalar_type()), stream()),
               "intq_gemv");
  return y;
}

at::Tensor int8_dequantize(const Int8Tensors& w, at::ScalarType dtype) {
  c10::cuda::CUDAGuard guard(w.q.device());
  auto q = w.q.contiguous(), scb = w.scb.contiguous();
  auto out = at::empty({w.out, w.in}, w.q.options().dtype(dtype));
  check_launch(kc::int8_dequantize(q.data_ptr<int8_t>(), scb.data_ptr<float>(), w.out, w.in,
                                   out.data_ptr(), dtype_of(dtype), stream()),
               "int8_dequantize");
  return out;
}

at::Tensor gguf_dequantize(const GgufTensors& w, at::ScalarType dtype) {
  c10::cuda::CUDAGuard guard(w.blocks.device());
  auto b = w.blocks.contiguous();
  auto out = at::empty({w.out, w.in}, b.options().dtype(dtype));
  check_launch(kc::gguf_dequantize(b.data_ptr<uint8_t>(), w.type, w.out, w.in, out.data_ptr(),
                                   dtype_of(dtype), stream()),
               "gguf_dequantize");
  return out;
}

at::Tensor gguf_gemv(const at::Tensor& x, const GgufTensors& w, const at::Tensor& bias) {
  c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), b = w.blocks.contiguous();
  at::Tensor bc;
  if (bias.defined()) bc = bias.reshape({w.out}).to(x.scalar_type()).contiguous();
  const int64_t rows = x.numel() / w.in;
  auto y = at::empty({rows, w.out}, x.options());
  check_launch(kc::gguf_gemv(b.data_ptr<uint8_t>(), w.type, xc.data_ptr(),
                             bc.defined() ? bc.data_ptr() : nullptr, y.data_ptr(), rows, w.out,
                             w.in, dtype_of(x.scalar_type()), stream()),
               "gguf_gemv");
  return y;
}

void peak_memory(int device, uint64_t* allocated, uint64_t* reserved) {
  namespace alloc = c10::cuda::CUDACachingAllocator;
  const auto stats = alloc::getDeviceStats(static_cast<c10::DeviceIndex>(device));
  const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
  *allocated = static_cast<uint64_t>(stats.allocated_bytes[all].peak);
  *reserved = static_cast<uint64_t>(stats.reserved_bytes[all].peak);
}

const CudaOps kOps{.abi_version = kCudaOpsAbi,
                   .rms_norm = rms_norm,
                   .silu_mul = silu_mul,
                   .nf4_dequantize = nf4_dequantize,
                   .nf4_gemv = nf4_gemv,
                   .nf4_gemv_max_rows = kc::kNf4GemvMaxRows,
                   .intq_dequantize = intq_dequantize,
                   .intq_gemv = intq_gemv,
                   .intq_gemv_max_rows = kc::kIntqGemvMaxRows,
                   .int8_dequantize = int8_dequantize,
                   .gguf_dequantize = gguf_dequantize,
                   .gguf_gemv = gguf_gemv,
                   .gguf_gemv_max_rows = kc::kGgufGemvMaxRows,
                   .peak_memory = peak_memory};

}  // namespace
}  // namespace sllm::ops

extern "C" const sllm::ops::CudaOps* sllm_cuda_ops_v1() { return &sllm::ops::kOps; }
