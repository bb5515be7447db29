// GGUF block ops on the CPU: dequantization and the fused q8 / f32 kernels over output rows split
// across threads (kernels/cpu/gguf_matmul.h); many rows take the kernels' panels on AVX-512,
// otherwise multiply dequantized tiles with at::mm.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

#include "kernels/cpu/gguf_matmul.h"
#include "ops/gguf_internal.h"
#include "ops/quant_internal.h"

namespace sllm::ops::detail {
namespace {

namespace kc = kernels::cpu;

// Most rows of x that take the fused kernels (decode and batched decode) when they multiply each
// weight block in turn with 4 rows at a time; more rows (prefill) dequantize tiles of the weight
// and multiply them with at::mm, unless the CPU has AVX-512: then the q8 path's int8 panels take
// any number of rows, the f32 path's fp32 panels up to kF32PanelMaxRows (beyond, at::mm's
// packed GEMM is faster: bench/op_bench.cpp, section gguf).
constexpr int64_t kFusedMaxRows = 16;
constexpr int64_t kF32PanelMaxRows = 64;
// Weight elements dequantized per tile of the prefill path (16 MB of fp32).
constexpr int64_t kTileElems = int64_t{1} << 22;

kc::GgufView view_of(const GgufTensors& w) {
  kc::GgufView v;
  v.blocks = w.blocks.data_ptr<uint8_t>();
  v.type = w.type;
  v.out = w.out;
  v.in = w.in;
  return v;
}

void dequantize_into(const kc::GgufView& v, int64_t o0, int64_t o1, float* out) {
  const int64_t grain = std::max<int64_t>(1, 65536 / v.in);
  at::parallel_for(o0, o1, grain,
                   [&](int64_t a, int64_t b) { kc::gguf_dequantize_rows(v, a, b, out); });
}

}  // namespace

at::Tensor gguf_dequantize_cpu(const GgufTensors& w) {
  const auto blocks = w.blocks.contiguous();
  auto v = view_of(w);
  v.blocks = blocks.data_ptr<uint8_t>();
  auto out = at::empty({w.out, w.in}, at::kFloat);
  dequantize_into(v, 0, w.out, out.data_ptr<float>());
  return out;
}

at::Tensor gguf_linear_cpu(const at::Tensor& x, const GgufTensors& w, const at::Tensor& bias,
                           int64_t rows) {
  const auto blocks = w.blocks.contiguous();
  auto v = view_of(w);
  v.blocks = blocks.data_ptr<uint8_t>();
  auto xf = x.reshape({rows, w.in}).to(at::kFloat).contiguous();
  const auto bf = bias.defined() ? bias.reshape({w.out}).to(at::kFloat).contiguous() : at::Tensor();
  const float* bp = bf.defined() ? bf.data_ptr<float>() : nullptr;
  auto y = at::empty({rows, w.out}, at::kFloat);
  float* yp = y.data_ptr<float>();
  const bool panels = kc::gguf_has_avx512() && (w.q8_act || rows <= kF32PanelMaxRows);
  if (rows <= kFusedMaxRows || panels) {
    const float* xp = xf.data_ptr<float>();
    const int64_t grain = std::max<int64_t>(rows > kFusedMaxRows ? 64 : 2, 16384 / w.in);
    if (w.q8_act) {
      const int64_t nb = rows * w.in / 32;
      auto qx = at::empty({rows * w.in}, at::kChar);
      auto ds = at::empty({2, nb}, at::kFloat);
      int8_t* qp = qx.data_ptr<int8_t>();
      float* dp = ds.data_ptr<float>();
      at::parallel_for(0, nb, 512, [&](int64_t b0, int64_t b1) {  // blocks, many for prefill
        kc::gguf_quantize_q8(xp + b0 * 32, (b1 - b0) * 32, qp + b0 * 32, dp + b0, dp + nb + b0);
      });
      at::parallel_for(0, w.out, grain, [&](int64_t o0, int64_t o1) {
        kc::gguf_gemm_q8(v, rows, qp, dp, dp + nb, bp, yp, o0, o1);
      });
    } else {
      at::parallel_for(0, w.out, grain, [&](int64_t o0, int64_t o1) {
        kc::gguf_gemm_f32(v, rows, xp, bp, yp, o0, o1);
      });
    }
  } else {
    // Prefill: tiles of output rows dequantized to fp32 and multiplied with at::mm; with q8
    // activations, x rounded through its int8 blocks first (the same products, summed in fp32).
    if (w.q8_act) {
      auto xr = at::empty_like(xf);
      const float* xp = xf.data_ptr<float>();
      float* rp = xr.data_ptr<float>();
      at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / w.in), [&](int64_t r0, int64_t r1) {
        kc::gguf_round_q8(xp + r0 * w.in, (r1 - r0) * w.in, rp + r0 * w.in);
      });
      xf = xr;
    }
    const int64_t tile = std::max<int64_t>(1, kTileElems / w.in);
    auto buf = at::empty({std::min(tile, w.out), w.in}, at::kFloat);
    for (int64_t o0 = 0; o0 < w.out; o0 += tile) {
      const int64_t n = std::min(tile, w.out - o0);
      auto wt = buf.narrow(0, 0, n);
      auto sub = v;  // rows o0.. of the weight
      sub.blocks += o0 * v.row_bytes();
      dequantize_into(sub, 0, n, wt.data_ptr<float>());
      auto part = at::mm(xf, wt.t());
      if (bf.defined()) part.add_(bf.narrow(0, o0, n));
      y.narrow(1, o0, n).copy_(part);
    }
  }
  return y.to(x.scalar_type()).reshape(out_sizes(x, w.out));
}

}  // namespace sllm::ops::detail
