// Integer-quantized ops on the CPU: dequantization, the fused GEMV / multi-row GEMM and
// LLM.int8() over rows split across threads (kernels/cpu/intq_matmul.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/intq_matmul.h"
#include "ops/quant_internal.h"

namespace sllm::ops::detail {
namespace {

namespace kc = kernels::cpu;

// Most rows of x (CPU) that take the fused multi-row kernel; more go to dequantize + GEMM. From
// bench/op_bench.cpp (30 weights in turn, 2 threads, AVX-512, int4 group 128): at 32 rows the
// kernel takes 0.5-0.6x the time of dequantize + at::linear at the default model's decode
// shapes; from 48 rows dequantize + GEMM is as fast or faster.
constexpr int64_t kCpuGemmSmallMaxRows = 32;
// Most rows (CPU) that take the int8 multi-row kernel; more go to at::_int_mm (oneDNN's blocked
// int8 GEMM, VNNI where the CPU has it) and the same epilogue. Measured the same way: the kernel
// is 1.3-2x faster at 1-4 rows, _int_mm from 6 rows on.
constexpr int64_t kCpuInt8SmallMaxRows = 4;

// Contiguous CPU views of the weight tensors (contiguous() is free when they already are).
struct Raw {
  at::Tensor q, s, z;
  kc::IntQView v;
  explicit Raw(const IntQTensors& w)
      : q(w.qweight.contiguous()), s(w.scales.contiguous()), z(w.zeros.contiguous()) {
    v.q = q.data_ptr<uint8_t>();
    v.scales = s.data_ptr<float>();
    v.zeros = z.data_ptr<float>();
    v.storage_bits = w.storage_bits();
    v.group_size = w.group_size;
    v.out = w.out;
    v.in = w.in;
  }
};

at::Tensor bias_f32(const at::Tensor& bias, int64_t out) {
  return bias.defined() ? bias.reshape({out}).to(at::kFloat).contiguous() : at::Tensor();
}

const float* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<float>() : nullptr;
}

}  // namespace

at::Tensor intq_dequantize_cpu(const IntQTensors& w, bool undo_perm) {
  const Raw r(w);
  at::Tensor perm;
  if (undo_perm && w.perm.defined()) perm = w.perm.contiguous();
  const int64_t* pp = perm.defined() ? perm.data_ptr<int64_t>() : nullptr;
  auto out = at::empty({w.out, w.in}, at::kFloat);
  float* op = out.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, 65536 / w.in);
  at::parallel_for(0, w.out, grain,
                   [&](int64_t o0, int64_t o1) { kc::intq_dequantize_f32(r.v, pp, o0, o1, op); });
  return out;
}

namespace {

// A few rows on the CPU: the fused GEMV (1 row) or multi-row kernel over output rows split
// across threads, fp32 inside.
at::Tensor fused_cpu(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias,
                     int64_t rows) {
  const Raw r(w);
  auto xf = storage_order(x.reshape({rows, w.in}).to(at::kFloat), w).contiguous();
  const auto bf = bias_f32(bias, w.out);
  auto y = at::empty({rows, w.out}, at::kFloat);
  const float* xp = xf.data_ptr<float>();
  const float* bp = ptr_or_null(bf);
  float* yp = y.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(2, 16384 / w.in);
  at::parallel_for(0, w.out, grain, [&](int64_t o0, int64_t o1) {
    if (rows == 1)
      kc::intq_gemv_f32(r.v, xp, bp, yp, o0, o1);
    else
      kc::intq_gemm_small_f32(r.v, rows, xp, bp, yp, o0, o1);
  });
  return y.to(x.scalar_type()).reshape(out_sizes(x, w.out));
}

}  // namespace

at::Tensor intq_linear_cpu(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias,
                           int64_t rows) {
  if (rows == 1 || (rows <= kCpuGemmSmallMaxRows && kc::intq_has_avx2()))
    return fused_cpu(x, w, bias, rows);
  // dequantize in storage order and gather x instead: no scattered weight writes
  auto x2 = storage_order(x.reshape({rows, w.in}), w);
  auto wd = intq_dequantize_cpu(w, false);
  return at::linear(x2, wd.to(x.scalar_type()), bias).reshape(out_sizes(x, w.out));
}

// LLM.int8() on the CPU: x rows quantized to int8 (outlier columns zeroed), int8 x int8 -> int32
// products scaled by sx * scb / 127^2, the outlier columns added in fp32 with the dequantized
// weight columns.
at::Tensor int8_linear_cpu(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias,
                           int64_t rows) {
  const int64_t in = w.in, out = w.out;
  auto xf = x.reshape({rows, in}).to(at::kFloat).contiguous();
  const float* xp = xf.data_ptr<float>();
  // What is quantized: x itself, or (bitsandbytes) x rounded to fp16.
  const auto xs = w.bnb && x.scalar_type() != at::kHalf ? xf.to(at::kHalf).to(at::kFloat) : xf;
  const float* sp_in = xs.data_ptr<float>();
  const float thr = static_cast<float>(w.threshold);
  std::vector<int64_t> idx(static_cast<size_t>(in));
  const int64_t n_out = thr > 0.f ? kc::int8_outlier_columns(sp_in, rows, in, thr, idx.data()) : 0;
  auto qx = at::empty({rows, in}, at::kChar);
  auto sx = at::empty({rows}, at::kFloat);
  int8_t* qp = qx.data_ptr<int8_t>();
  float* sp = sx.data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / in), [&](int64_t r0, int64_t r1) {
    kc::int8_quantize_rows(sp_in, in, thr, idx.data(), n_out, qp, sp, r0, r1, kc::IntQSimd::kAuto,
                           w.bnb);
  });
  const auto wq = w.q.contiguous();
  const auto scb = w.scb.contiguous();
  const int8_t* wp = wq.data_ptr<int8_t>();
  const float* cp = scb.data_ptr<float>();
  const auto bf = bias_f32(bias, out);
  const float* bp = ptr_or_null(bf);
  auto y = at::empty({rows, out}, at::kFloat);
  float* yp = y.data_ptr<float>();
  if (rows <= kCpuInt8SmallMaxRows) {
    at::parallel_for(0, out, std::max<int64_t>(1, 16384 / in), [&](int64_t o0, int64_t o1) {
      kc::int8_gemm_small(wp, cp, out, in, rows, qp, sp, bp, yp, o0, o1, kc::IntQSimd::kAuto,
                          w.bnb);
      if (n_out)
        kc::int8_outlier_add(wp, cp, out, in, rows, xp, idx.data(), n_out, yp, o0, o1, w.bnb);
    });
  } else {
    const auto acc = at::_int_mm(qx, wq.t());
    const int32_t* ap = acc.data_ptr<int32_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / out), [&](int64_t r0, int64_t r1) {
      kc::int8_dequantize_acc(ap, out, sp, cp, bp, yp, r0, r1, w.bnb);
    });
    if (n_out) {
      auto cols = at::from_blob(idx.data(), {n_out}, at::kLong);
      auto wcols = wq.index_select(1, cols).to(at::kFloat).mul_(scb.unsqueeze(1));
      if (w.bnb)
        wcols.mul_(kc::kBnbInv127);
      else
        wcols.div_(127.f);
      y.addmm_(xf.index_select(1, cols), wcols.t());
    }
  }
  return y.to(x.scalar_type()).reshape(out_sizes(x, out));
}

}  // namespace sllm::ops::detail
