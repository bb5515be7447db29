// GGUF block ops: tensor checks and the choice of kernel by device (CPU: gguf_cpu.cpp, other
// devices: the reference's tensor ops); the reference is in gguf_ref.cpp.
#include "ops/gguf.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "core/error.h"
#include "kernels/cpu/gguf_matmul.h"
#include "ops/cuda_plugin.h"
#include "ops/gguf_internal.h"
#include "ops/quant_internal.h"

namespace sllm::ops {

namespace {

kernels::cpu::GgufView layout(int type) {
  kernels::cpu::GgufView v;
  v.type = type;
  return v;
}

}  // namespace

bool gguf_linear_type(uint32_t type) {
  return type == 2 || type == 3 || type == 6 || type == 7 || type == 8 || type == 12 ||
         type == 13 || type == 14;
}

int64_t GgufTensors::block_elems() const { return layout(type).block_elems(); }

int64_t GgufTensors::row_bytes() const { return in / block_elems() * layout(type).block_bytes(); }

std::string GgufTensors::type_name() const {
  switch (type) {
    case 2:
      return "Q4_0";
    case 3:
      return "Q4_1";
    case 6:
      return "Q5_0";
    case 7:
      return "Q5_1";
    case 8:
      return "Q8_0";
    case 12:
      return "Q4_K";
    case 13:
      return "Q5_K";
    case 14:
      return "Q6_K";
    default:
      return "type#" + std::to_string(type);
  }
}

GgufTensors GgufTensors::to(at::Device device) const {
  GgufTensors r = *this;
  r.blocks = blocks.to(device);
  return r;
}

void detail::check(const GgufTensors& w) {
  SLLM_CHECK(gguf_linear_type(static_cast<uint32_t>(w.type)),
             "gguf: GGML type {} is not kept as stored (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, "
             "Q5_K and Q6_K are)",
             w.type);
  SLLM_CHECK(w.out > 0 && w.in > 0 && w.in % w.block_elems() == 0,
             "gguf: bad shape [{}, {}] for {} (in must be a multiple of its {}-element block)",
             w.out, w.in, w.type_name(), w.block_elems());
  SLLM_CHECK(w.blocks.defined() && w.blocks.scalar_type() == at::kByte && w.blocks.dim() == 2 &&
                 w.blocks.size(0) == w.out && w.blocks.size(1) == w.row_bytes(),
             "gguf: blocks must be uint8 [{}, {}] for {} [{}, {}]", w.out, w.row_bytes(),
             w.type_name(), w.out, w.in);
}

GgufTensors make_gguf_tensors(at::Tensor blocks, uint32_t type, int64_t out, int64_t in,
                              bool q8_act) {
  GgufTensors w;
  w.blocks = blocks.contiguous();
  w.type = static_cast<int>(type);
  w.out = out;
  w.in = in;
  w.q8_act = q8_act;
  detail::check(w);
  return w;
}

at::Tensor gguf_dequantize(const GgufTensors& w, at::ScalarType dtype) {
  detail::check(w);
  if (w.blocks.is_cuda() && cuda_ops() && detail::float_type(dtype))
    return cuda_ops()->gguf_dequantize(w, dtype);
  if (!w.blocks.device().is_cpu()) return ref::gguf_dequantize(w, dtype);
  auto out = detail::gguf_dequantize_cpu(w);
  return dtype == at::kFloat ? out : out.to(dtype);
}

at::Tensor gguf_rows(const GgufTensors& w, const at::Tensor& ids, at::ScalarType dtype) {
  detail::check(w);
  auto flat = ids.reshape({-1}).to(w.blocks.device(), at::kLong);
  if (flat.numel() > 0) {
    const auto lo = flat.min().item<int64_t>(), hi = flat.max().item<int64_t>();
    SLLM_CHECK(lo >= 0 && hi < w.out, "gguf: row ids {}..{} out of range 0..{}", lo, hi, w.out - 1);
  }
  GgufTensors sub = w;  // the selected rows' blocks, dequantized
  sub.blocks = w.blocks.index_select(0, flat);
  sub.out = flat.numel();
  auto sizes = ids.sizes().vec();
  sizes.push_back(w.in);
  if (sub.out == 0) return at::empty(sizes, at::TensorOptions().dtype(dtype));
  return gguf_dequantize(sub, dtype).reshape(sizes);
}

at::Tensor gguf_linear(const at::Tensor& x, const GgufTensors& w, const at::Tensor& bias) {
  detail::check(w);
  SLLM_CHECK(x.dim() >= 1 && x.size(-1) == w.in, "gguf_linear: x {} does not end in in={}",
             c10::str(x.sizes()), w.in);
  SLLM_CHECK(x.device() == w.blocks.device(), "gguf_linear: x on {} but the weight on {}",
             x.device().str(), w.blocks.device().str());
  if (bias.defined())
    SLLM_CHECK(bias.numel() == w.out, "gguf_linear: bias has {} values, expected {}", bias.numel(),
               w.out);
  const bool grad =
      at::GradMode::is_enabled() && (x.requires_grad() || (bias.defined() && bias.requires_grad()));
  const int64_t rows = x.numel() / w.in;
  // Gradients flow to x and bias through the dense weight (the weight itself is frozen).
  if (!grad && rows > 0 && x.device().is_cpu() && detail::float_type(x.scalar_type()))
    return detail::gguf_linear_cpu(x, w, bias, rows);
  // CUDA: the fused GEMV for a few rows (fp32 activations in x's dtype); more rows dequantize
  // once (gguf_dequantize's kernel) and multiply with cuBLAS.
  if (!grad && rows > 0 && x.is_cuda() && detail::float_type(x.scalar_type()) && cuda_ops() &&
      rows <= cuda_ops()->gguf_gemv_max_rows) {
    auto sizes = x.sizes().vec();
    sizes.back() = w.out;
    return cuda_ops()->gguf_gemv(x.reshape({rows, w.in}), w, bias).reshape(sizes);
  }
  return at::linear(x, gguf_dequantize(w, x.scalar_type()), bias);
}

}  // namespace sllm::ops
