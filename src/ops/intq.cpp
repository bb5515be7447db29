// Integer-quantized ops: tensor checks and the choice of kernel by device and shape (CPU:
// intq_cpu.cpp, CUDA: the plugin, otherwise floating point); the references are in intq_ref.cpp.
#include "ops/intq.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/intq_matmul.h"
#include "ops/cuda_plugin.h"
#include "ops/quant_internal.h"

namespace sllm::ops {

using detail::check;
using detail::float_type;
using detail::out_sizes;

void detail::check(const IntQTensors& w) {
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

void detail::check(const Int8Tensors& w) {
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

namespace {

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

at::Tensor intq_linear_nograd(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias) {
  const int64_t rows = x.numel() / w.in;
  if (rows == 0) return at::empty(out_sizes(x, w.out), x.options());
  if (x.device().is_cpu() && float_type(x.scalar_type()))
    return detail::intq_linear_cpu(x, w, bias, rows);
  if (x.is_cuda() && float_type(x.scalar_type()) && cuda_ops() &&
      rows <= cuda_ops()->intq_gemv_max_rows) {
    auto xs = detail::storage_order(x.reshape({rows, w.in}), w).contiguous();
    return cuda_ops()->intq_gemv(xs, w, bias).reshape(out_sizes(x, w.out));
  }
  return at::linear(x, intq_dequantize(w, x.scalar_type()), bias);
}

// Other devices (CUDA): the same arithmetic in floating point. x rows are quantized to int8
// values and dequantized again (x_int * sx / 127, outlier columns keep x), then multiplied with
// the dequantized weight (q * scb / 127): the int8 products times sx * scb / 127^2 up to float
// rounding, without an int8 GEMM.
at::Tensor int8_linear_emulated(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias,
                                int64_t rows) {
  auto xf = x.reshape({rows, w.in}).to(at::kFloat);
  auto xs = w.bnb ? xf.to(at::kHalf).to(at::kFloat) : xf;  // what is quantized
  auto xi = xs;
  at::Tensor cols;  // bool [in]: outlier columns
  if (w.threshold > 0) {
    auto big = xs.abs() >= w.threshold;
    cols = big.any(0);
    xi = xs.masked_fill(big, 0.0);
  }
  auto sx = xi.abs().amax(1, true);
  auto k = w.bnb ? sx.reciprocal() * 127.f : at::full_like(sx, 127.f) / sx;
  auto inv = at::where(sx > 0, k, at::zeros_like(sx));
  auto xq = at::round(xi * inv);
  // x_int * sx * dq * 127 times the dequantized weight (q * scb / 127): acc * sx * scb * dq
  auto xd = xq * (sx * (kernels::cpu::int8_dequant_const(w.bnb) * 127.f));
  if (cols.defined()) xd = at::where(cols.unsqueeze(0), xf, xd);
  return at::linear(xd.to(x.scalar_type()), int8_dequantize(w, x.scalar_type()), bias)
      .reshape(out_sizes(x, w.out));
}

at::Tensor int8_linear_nograd(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias) {
  const int64_t rows = x.numel() / w.in;
  if (rows == 0) return at::empty(out_sizes(x, w.out), x.options());
  if (x.device().is_cpu() && float_type(x.scalar_type()))
    return detail::int8_linear_cpu(x, w, bias, rows);
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
    auto out = detail::intq_dequantize_cpu(w, true);
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

}  // namespace sllm::ops
