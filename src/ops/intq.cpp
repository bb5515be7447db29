#include "ops/intq.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/intq_matmul.h"
#include "ops/cuda_plugin.h"

namespace sllm::ops {
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

bool float_type(at::ScalarType t) {
  return t == at::kFloat || t == at::kBFloat16 || t == at::kHalf;
}

std::vector<int64_t> out_sizes(const at::Tensor& x, int64_t out) {
  auto s = x.sizes().vec();
  s.back() = out;
  return s;
}

void check(const IntQTensors& w) {
  SLLM_CHECK(w.qweight.defined() && w.scales.defined() && w.zeros.defined(),
             "intq: qweight, scales and zeros must all be set");
  SLLM_CHECK(w.bits >= 2 && w.bits <= 8, "intq: bits must be 2..8 (got {})", w.bits);
  SLLM_CHECK(w.out > 0 && w.in > 0 && w.group_size > 0, "intq: bad shape [{}, {}] / group size {}",
             w.out, w.in, w.group_size);
  SLLM_CHECK(w.storage_bits() == 8 || w.in % 2 == 0, "intq: 4-bit storage needs an even in ({})",
             w.in);
  const int64_t cols = w.storage_bits() == 4 ? w.in / 2 : w.in;
  SLLM_CHECK(w.qweight.scalar_type() == at::kByte && w.qweight.dim() == 2 &&
                 w.qweight.size(0) == w.out && w.qweight.size(1) == cols,
             "intq: qweight must be uint8 [{}, {}] (got {} {})", w.out, cols,
             c10::toString(w.qweight.scalar_type()), c10::str(w.qweight.sizes()));
  for (const auto* t : {&w.scales, &w.zeros})
    SLLM_CHECK(t->scalar_type() == at::kFloat && t->dim() == 2 && t->size(0) == w.out &&
                   t->size(1) == w.groups(),
               "intq: scales and zeros must be fp32 [{}, {}] (got {} {})", w.out, w.groups(),
               c10::toString(t->scalar_type()), c10::str(t->sizes()));
  SLLM_CHECK(w.scales.device() == w.qweight.device() && w.zeros.device() == w.qweight.device(),
             "intq: qweight, scales and zeros on different devices");
  if (w.perm.defined())
    SLLM_CHECK(w.perm.scalar_type() == at::kLong && w.perm.numel() == w.in &&
                   w.perm.device() == w.qweight.device(),
               "intq: perm must be int64 [{}] on the weight's device", w.in);
}

void check(const Int8Tensors& w) {
  SLLM_CHECK(w.q.defined() && w.scb.defined(), "int8: q and scb must both be set");
  SLLM_CHECK(w.out > 0 && w.in > 0, "int8: bad shape [{}, {}]", w.out, w.in);
  SLLM_CHECK(w.q.scalar_type() == at::kChar && w.q.dim() == 2 && w.q.size(0) == w.out &&
                 w.q.size(1) == w.in,
             "int8: q must be int8 [{}, {}] (got {} {})", w.out, w.in,
             c10::toString(w.q.scalar_type()), c10::str(w.q.sizes()));
  SLLM_CHECK(w.scb.scalar_type() == at::kFloat && w.scb.numel() == w.out,
             "int8: scb must be fp32 with {} values", w.out);
  SLLM_CHECK(w.scb.device() == w.q.device(), "int8: q and scb on different devices");
}

template <class W>
void check_x(const char* what, const at::Tensor& x, const W& w, const at::Tensor& weight_tensor,
             const at::Tensor& bias) {
  SLLM_CHECK(x.dim() >= 1 && x.size(-1) == w.in, "{}: x {} does not end in in={}", what,
             c10::str(x.sizes()), w.in);
  SLLM_CHECK(x.device() == weight_tensor.device(), "{}: x on {} but the weight on {}", what,
             x.device().str(), weight_tensor.device().str());
  if (bias.defined())
    SLLM_CHECK(bias.numel() == w.out, "{}: bias has {} values, expected {}", what, bias.numel(),
               w.out);
}

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

// Dense fp32 [out, in]; perm undone when undo_perm, else in storage column order.
at::Tensor dequantize_cpu(const IntQTensors& w, bool undo_perm) {
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

// x [..., in] as [rows, in] in storage column order (x[:, perm] for act-order weights).
at::Tensor storage_order(const at::Tensor& x2, const IntQTensors& w) {
  return w.perm.defined() ? x2.index_select(1, w.perm) : x2;
}

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

at::Tensor intq_linear_nograd(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias) {
  const int64_t rows = x.numel() / w.in;
  if (rows == 0) return at::empty(out_sizes(x, w.out), x.options());
  if (x.device().is_cpu() && float_type(x.scalar_type())) {
    if (rows == 1 || (rows <= kCpuGemmSmallMaxRows && kc::intq_has_avx2()))
      return fused_cpu(x, w, bias, rows);
    // dequantize in storage order and gather x instead: no scattered weight writes
    auto x2 = storage_order(x.reshape({rows, w.in}), w);
    auto wd = dequantize_cpu(w, false);
    return at::linear(x2, wd.to(x.scalar_type()), bias).reshape(out_sizes(x, w.out));
  }
  if (x.is_cuda() && float_type(x.scalar_type()) && cuda_ops() &&
      rows <= cuda_ops()->intq_gemv_max_rows) {
    auto xs = storage_order(x.reshape({rows, w.in}), w).contiguous();
    return cuda_ops()->intq_gemv(xs, w, bias).reshape(out_sizes(x, w.out));
  }
  return at::linear(x, intq_dequantize(w, x.scalar_type()), bias);
}

// LLM.int8() on the CPU: x rows quantized to int8 (outlier columns zeroed), int8 x int8 -> int32
// products scaled by sx * scb / 127^2, the outlier columns added in fp32 with the dequantized
// weight columns.
at::Tensor int8_linear_cpu(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias,
                           int64_t rows) {
  const int64_t in = w.in, out = w.out;
  auto xf = x.reshape({rows, in}).to(at::kFloat).contiguous();
  const float* xp = xf.data_ptr<float>();
  const float thr = static_cast<float>(w.threshold);
  std::vector<int64_t> idx(static_cast<size_t>(in));
  const int64_t n_out = thr > 0.f ? kc::int8_outlier_columns(xp, rows, in, thr, idx.data()) : 0;
  auto qx = at::empty({rows, in}, at::kChar);
  auto sx = at::empty({rows}, at::kFloat);
  int8_t* qp = qx.data_ptr<int8_t>();
  float* sp = sx.data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / in), [&](int64_t r0, int64_t r1) {
    kc::int8_quantize_rows(xp, in, thr, idx.data(), n_out, qp, sp, r0, r1);
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
      kc::int8_gemm_small(wp, cp, out, in, rows, qp, sp, bp, yp, o0, o1);
      if (n_out) kc::int8_outlier_add(wp, cp, out, in, rows, xp, idx.data(), n_out, yp, o0, o1);
    });
  } else {
    const auto acc = at::_int_mm(qx, wq.t());
    const int32_t* ap = acc.data_ptr<int32_t>();
    at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / out), [&](int64_t r0, int64_t r1) {
      kc::int8_dequantize_acc(ap, out, sp, cp, bp, yp, r0, r1);
    });
    if (n_out) {
      auto cols = at::from_blob(idx.data(), {n_out}, at::kLong);
      auto wcols = wq.index_select(1, cols).to(at::kFloat).mul_(scb.unsqueeze(1)).div_(127.f);
      y.addmm_(xf.index_select(1, cols), wcols.t());
    }
  }
  return y.to(x.scalar_type()).reshape(out_sizes(x, out));
}

// Other devices (CUDA): the same arithmetic in floating point. x rows are quantized to int8
// values and dequantized again (x_int * sx / 127, outlier columns keep x), then multiplied with
// the dequantized weight (q * scb / 127): the int8 products times sx * scb / 127^2 up to float
// rounding, without an int8 GEMM.
at::Tensor int8_linear_emulated(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias,
                                int64_t rows) {
  auto xf = x.reshape({rows, w.in}).to(at::kFloat);
  auto xi = xf;
  at::Tensor cols;  // bool [in]: outlier columns
  if (w.threshold > 0) {
    auto big = xf.abs() >= w.threshold;
    cols = big.any(0);
    xi = xf.masked_fill(big, 0.0);
  }
  auto sx = xi.abs().amax(1, true);
  auto inv = at::where(sx > 0, at::full_like(sx, 127.f) / sx, at::zeros_like(sx));
  auto xq = at::round(xi * inv);
  auto xd = xq * (sx / 127.f);
  if (cols.defined()) xd = at::where(cols.unsqueeze(0), xf, xd);
  return at::linear(xd.to(x.scalar_type()), int8_dequantize(w, x.scalar_type()), bias)
      .reshape(out_sizes(x, w.out));
}

at::Tensor int8_linear_nograd(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias) {
  const int64_t rows = x.numel() / w.in;
  if (rows == 0) return at::empty(out_sizes(x, w.out), x.options());
  if (x.device().is_cpu() && float_type(x.scalar_type())) return int8_linear_cpu(x, w, bias, rows);
  return int8_linear_emulated(x, w, bias, rows);
}

bool needs_grad(const at::Tensor& x, const at::Tensor& bias) {
  return at::GradMode::is_enabled() &&
         (x.requires_grad() || (bias.defined() && bias.requires_grad()));
}

}  // namespace

IntQTensors IntQTensors::to(at::Device device) const {
  IntQTensors r = *this;
  r.qweight = qweight.to(device);
  r.scales = scales.to(device);
  r.zeros = zeros.to(device);
  if (perm.defined()) r.perm = perm.to(device);
  return r;
}

int64_t IntQTensors::nbytes() const {
  int64_t n = 0;
  for (const auto* t : {&qweight, &scales, &zeros, &perm})
    if (t->defined()) n += static_cast<int64_t>(t->nbytes());
  return n;
}

IntQTensors make_intq_tensors(const uint8_t* q, const float* scales, const float* zeros,
                              const int64_t* perm, int bits, int64_t group_size, int64_t out,
                              int64_t in) {
  IntQTensors w;
  w.bits = bits;
  w.group_size = group_size;
  w.out = out;
  w.in = in;
  SLLM_CHECK(bits >= 2 && bits <= 8, "intq: bits must be 2..8 (got {})", bits);
  SLLM_CHECK(out > 0 && in > 0 && group_size > 0, "intq: bad shape [{}, {}] / group size {}", out,
             in, group_size);
  SLLM_CHECK(w.storage_bits() == 8 || in % 2 == 0, "intq: 4-bit storage needs an even in ({})", in);
  const int max_q = (1 << bits) - 1;
  for (int64_t i = 0; i < out * in; ++i)
    SLLM_CHECK(q[i] <= max_q, "intq: value {} at {} out of range for {} bits", q[i], i, bits);
  if (w.storage_bits() == 4) {
    w.qweight = at::empty({out, in / 2}, at::kByte);
    uint8_t* p = w.qweight.data_ptr<uint8_t>();
    for (int64_t j = 0; j < out * in / 2; ++j)
      p[j] = static_cast<uint8_t>(q[2 * j] | (q[2 * j + 1] << 4));
  } else {
    w.qweight = at::empty({out, in}, at::kByte);
    std::copy_n(q, out * in, w.qweight.data_ptr<uint8_t>());
  }
  w.scales = at::empty({out, w.groups()}, at::kFloat);
  std::copy_n(scales, out * w.groups(), w.scales.data_ptr<float>());
  w.zeros = at::empty({out, w.groups()}, at::kFloat);
  std::copy_n(zeros, out * w.groups(), w.zeros.data_ptr<float>());
  if (perm) {
    std::vector<bool> seen(static_cast<size_t>(in), false);
    for (int64_t j = 0; j < in; ++j) {
      SLLM_CHECK(perm[j] >= 0 && perm[j] < in && !seen[perm[j]],
                 "intq: perm is not a permutation of 0..{}", in - 1);
      seen[perm[j]] = true;
    }
    w.perm = at::empty({in}, at::kLong);
    std::copy_n(perm, in, w.perm.data_ptr<int64_t>());
  }
  return w;
}

at::Tensor intq_dequantize(const IntQTensors& w, at::ScalarType dtype) {
  check(w);
  if (w.qweight.is_cuda() && cuda_ops()) {
    const at::ScalarType kt = float_type(dtype) ? dtype : at::kFloat;
    auto out = cuda_ops()->intq_dequantize(w, kt);
    return kt == dtype ? out : out.to(dtype);
  }
  if (w.qweight.device().is_cpu()) {
    auto out = dequantize_cpu(w, true);
    return dtype == at::kFloat ? out : out.to(dtype);
  }
  return ref::intq_dequantize(w, dtype);
}

at::Tensor intq_linear(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias) {
  check(w);
  check_x("intq_linear", x, w, w.qweight, bias);
  // Gradients flow to x and bias through the dense weight (the weight itself is frozen).
  if (needs_grad(x, bias)) return at::linear(x, intq_dequantize(w, x.scalar_type()), bias);
  return intq_linear_nograd(x, w, bias);
}

Int8Tensors Int8Tensors::to(at::Device device) const {
  Int8Tensors r = *this;
  r.q = q.to(device);
  r.scb = scb.to(device);
  return r;
}

int64_t Int8Tensors::nbytes() const {
  int64_t n = 0;
  for (const auto* t : {&q, &scb})
    if (t->defined()) n += static_cast<int64_t>(t->nbytes());
  return n;
}

Int8Tensors make_int8_tensors(const int8_t* q, const float* scb, int64_t out, int64_t in,
                              double threshold) {
  SLLM_CHECK(out > 0 && in > 0, "int8: bad shape [{}, {}]", out, in);
  Int8Tensors w;
  w.q = at::empty({out, in}, at::kChar);
  std::copy_n(q, out * in, w.q.data_ptr<int8_t>());
  w.scb = at::empty({out}, at::kFloat);
  std::copy_n(scb, out, w.scb.data_ptr<float>());
  w.threshold = threshold;
  w.out = out;
  w.in = in;
  return w;
}

at::Tensor int8_dequantize(const Int8Tensors& w, at::ScalarType dtype) {
  check(w);
  if (w.q.is_cuda() && cuda_ops()) {
    const at::ScalarType kt = float_type(dtype) ? dtype : at::kFloat;
    auto out = cuda_ops()->int8_dequantize(w, kt);
    return kt == dtype ? out : out.to(dtype);
  }
  return ref::int8_dequantize(w, dtype);
}

at::Tensor int8_linear(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias) {
  check(w);
  check_x("int8_linear", x, w, w.q, bias);
  if (!needs_grad(x, bias)) return int8_linear_nograd(x, w, bias);
  // The value of the int8 matmul with the gradient of the dequantized weight's (straight
  // through the activation quantization, as bitsandbytes' backward).
  at::Tensor y;
  {
    at::NoGradGuard no_grad;
    y = int8_linear_nograd(x.detach(), w, bias.defined() ? bias.detach() : bias);
  }
  auto lin = at::linear(x, int8_dequantize(w, x.scalar_type()), bias);
  return lin + (y - lin.detach());
}

namespace ref {

at::Tensor intq_dequantize(const IntQTensors& w, at::ScalarType dtype) {
  check(w);
  at::Tensor q = w.qweight.to(at::kLong);
  if (w.storage_bits() == 4)
    q = at::stack({q.bitwise_and(0x0F), q.bitwise_right_shift(4)}, -1).reshape({w.out, w.in});
  auto s = w.scales.repeat_interleave(w.group_size, 1).narrow(1, 0, w.in);
  auto z = w.zeros.repeat_interleave(w.group_size, 1).narrow(1, 0, w.in);
  auto d = (q.to(at::kFloat) - z) * s;  // storage column order
  if (w.perm.defined()) d = at::zeros_like(d).index_copy_(1, w.perm, d);
  return d.to(dtype);
}

at::Tensor intq_linear(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias) {
  return at::linear(x, ref::intq_dequantize(w, x.scalar_type()), bias);
}

at::Tensor int8_dequantize(const Int8Tensors& w, at::ScalarType dtype) {
  check(w);
  return (w.q.to(at::kFloat) * w.scb.unsqueeze(1) / 127.f).to(dtype);
}

// bitsandbytes' int8_vectorwise_quant + int8 matmul + mm_dequant, with exact products in fp64.
at::Tensor int8_linear(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias) {
  check(w);
  const int64_t rows = x.numel() / w.in;
  auto xf = x.reshape({rows, w.in}).to(at::kFloat);
  auto xi = xf;
  at::Tensor cols;
  if (w.threshold > 0) {
    auto big = xf.abs() >= w.threshold;
    cols = big.any(0).nonzero().reshape({-1});
    xi = xf.masked_fill(big, 0.0);  // outlier elements leave the row absmax
  }
  auto sx = xi.abs().amax(1, true);
  auto inv = at::where(sx > 0, at::full_like(sx, 127.f) / sx, at::zeros_like(sx));
  auto xq = at::round(xi * inv);
  if (cols.defined() && cols.numel() > 0) xq.index_fill_(1, cols, 0.0);
  auto acc = at::matmul(xq.to(at::kDouble), w.q.to(at::kDouble).t());  // exact integers
  auto y = acc * sx.to(at::kDouble) * w.scb.to(at::kDouble).unsqueeze(0) / (127.0 * 127.0);
  if (cols.defined() && cols.numel() > 0)
    y = y +
        at::matmul(xf.index_select(1, cols).to(at::kDouble),
                   ref::int8_dequantize(w, at::kFloat).index_select(1, cols).to(at::kDouble).t());
  if (bias.defined()) y = y + bias.reshape({w.out}).to(at::kDouble);
  return y.to(x.scalar_type()).reshape(out_sizes(x, w.out));
}

}  // namespace ref

}  // namespace sllm::ops
