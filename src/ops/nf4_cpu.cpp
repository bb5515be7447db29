// NF4 / FP4 ops on the CPU: dequantization and the fused GEMV / multi-row GEMM, over output
// rows split across threads (kernels/cpu/nf4_matmul.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "kernels/cpu/nf4_matmul.h"
#include "ops/quant_internal.h"

namespace sllm::ops::detail {
namespace {

namespace kc = kernels::cpu;

// Raw contiguous views of the three tensors (contiguous() is free when they already are).
struct Raw {
  at::Tensor packed, absmax, code;
  explicit Raw(const Nf4Tensors& w)
      : packed(w.packed.contiguous()), absmax(w.absmax.contiguous()), code(w.code.contiguous()) {}
  const uint8_t* p() const { return packed.data_ptr<uint8_t>(); }
  const float* a() const { return absmax.data_ptr<float>(); }
  const float* c() const { return code.data_ptr<float>(); }
};

// Most rows of x (CPU) that take the fused multi-row kernel; more go to dequantize + GEMM.
// From bench/op_bench.cpp (batched decode, 30 weights in turn, AVX-512, 1 thread): the kernel
// is 3.5-3.9x faster than dequantize + at::linear at 2 rows, 1.8x at 8, 1.3x at 16, 1.1-1.3x at
// 32, even at 48 and up to 5% behind at 64 (its cost grows with rows at about the GEMM's rate;
// what it saves is the dense dequantization of every call). Without AVX2 the kernel's scalar path
// is no match for dequantize + BLAS, so such CPUs keep dequantize + GEMM.
constexpr int64_t kCpuGemmSmallMaxRows = 32;

// One token on the CPU: fp32 GEMV over output rows split across threads.
at::Tensor gemv_cpu(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias) {
  const Raw r(w);
  auto xf = x.reshape({w.in}).to(at::kFloat).contiguous();
  at::Tensor bf;
  if (bias.defined()) bf = bias.reshape({w.out}).to(at::kFloat).contiguous();
  auto y = at::empty({w.out}, at::TensorOptions().dtype(at::kFloat));
  const float* xp = xf.data_ptr<float>();
  const float* bp = bf.defined() ? bf.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 16384 / w.in);
  at::parallel_for(0, w.out, grain, [&](int64_t o0, int64_t o1) {
    kc::nf4_gemv_f32(r.p(), r.a(), r.c(), w.blocksize, w.in, xp, bp, yp, o0, o1);
  });
  return y.to(x.scalar_type()).reshape(out_sizes(x, w.out));
}

// A few rows on the CPU (batched decode): the fused multi-row GEMM over output columns split
// across threads; every weight is decoded once per tile of rows instead of dequantizing the
// whole weight to a dense fp32 copy.
at::Tensor gemm_small_cpu(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias,
                          int64_t rows) {
  const Raw r(w);
  auto xf = x.reshape({rows, w.in}).to(at::kFloat).contiguous();
  at::Tensor bf;
  if (bias.defined()) bf = bias.reshape({w.out}).to(at::kFloat).contiguous();
  auto y = at::empty({rows, w.out}, at::TensorOptions().dtype(at::kFloat));
  const float* xp = xf.data_ptr<float>();
  const float* bp = bf.defined() ? bf.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(2, 16384 / w.in);
  at::parallel_for(0, w.out, grain, [&](int64_t o0, int64_t o1) {
    kc::nf4_gemm_small_f32(r.p(), r.a(), r.c(), w.blocksize, w.out, w.in, rows, xp, bp, yp, o0, o1);
  });
  return y.to(x.scalar_type()).reshape(out_sizes(x, w.out));
}

}  // namespace

at::Tensor nf4_dequantize_cpu(const Nf4Tensors& w, at::ScalarType dtype) {
  const Raw r(w);
  const int64_t n = w.out * w.in;
  constexpr int64_t kGrain = 1 << 16;  // elements per task
  if (dtype == at::kBFloat16) {
    auto out = at::empty({w.out, w.in}, at::TensorOptions().dtype(at::kBFloat16));
    auto* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
    at::parallel_for(0, n, kGrain, [&](int64_t e0, int64_t e1) {
      kc::nf4_dequantize_bf16(r.p(), r.a(), r.c(), w.blocksize, e0, e1, op);
    });
    return out;
  }
  auto out = at::empty({w.out, w.in}, at::TensorOptions().dtype(at::kFloat));
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n, kGrain, [&](int64_t e0, int64_t e1) {
    kc::nf4_dequantize_f32(r.p(), r.a(), r.c(), w.blocksize, e0, e1, op);
  });
  return dtype == at::kFloat ? out : out.to(dtype);
}

at::Tensor nf4_linear_cpu(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias,
                          int64_t rows) {
  if (rows == 1) return gemv_cpu(x, w, bias);
  if (rows >= 2 && rows <= kCpuGemmSmallMaxRows && kc::nf4_has_avx2())
    return gemm_small_cpu(x, w, bias, rows);
  return at::Tensor();
}

}  // namespace sllm::ops::detail
