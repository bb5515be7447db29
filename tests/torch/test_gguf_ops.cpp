// GGUF block ops (src/ops/gguf.h, kernels/cpu/gguf_matmul.h) against their plain-libtorch
// references and an independent plain loop (K-quants: the load-time dequantizers, checked against
// the gguf Python package): dequantization bit for bit (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K,
// Q6_K), the scalar / AVX2 / AVX-512 VNNI kernels of both activation paths (int8 blocks, fp32)
// over 1..16 rows, gguf_linear over the fused and the dequantized-tile paths (fp32 and bf16 x,
// bias), the embedding-row lookup, gradients, and bad tensors as clear errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gguf_dequant.h"
#include "kernels/cpu/gguf_matmul.h"
#include "ops/cuda_plugin.h"
#include "ops/gguf.h"

using namespace sllm;
using kernels::cpu::GgufSimd;

namespace {

uint16_t to_half_bits(float v) {
  const auto h = at::tensor({v}).to(at::kHalf);
  uint16_t b;
  std::memcpy(&b, h.data_ptr(), 2);
  return b;
}

bool k_quant(int type) { return type == 12 || type == 13 || type == 14; }

int64_t block_bytes(int type) {
  switch (type) {
    case 12:
      return kernels::cpu::kQ4_KBytes;
    case 13:
      return kernels::cpu::kQ5_KBytes;
    case 14:
      return kernels::cpu::kQ6_KBytes;
    default:
      return type == 2 ? 18 : type == 3 ? 20 : type == 6 ? 22 : type == 7 ? 24 : 34;
  }
}

// A row width of whole blocks: K-quants round `in` up to whole 256-element super-blocks.
int64_t width(int type, int64_t in) { return k_quant(type) ? (in + 255) / 256 * 256 : in; }

// A K-quant super-block's fp16 fields set to random scales (the other bytes stay random: every
// 6-bit scale / minimum and Q6_K's int8 scales, of either sign): Q4_K / Q5_K d ~ 3e-5..7e-4 and
// dmin ~ 0..3e-3 (times 6-bit scales up to 63), Q6_K d ~ 1e-5..3e-4 (times int8 scales).
void set_k_scales(int type, uint8_t* p, int64_t n, uint64_t seed) {
  at::manual_seed(seed);
  auto r = at::rand({n, 2});
  const float* rp = r.data_ptr<float>();
  const int64_t bb = block_bytes(type);
  for (int64_t k = 0; k < n; ++k, p += bb) {
    if (type == 14) {
      const uint16_t dh = to_half_bits(rp[2 * k] * 3e-4f + 1e-5f);
      std::memcpy(p + 208, &dh, 2);
    } else {
      const uint16_t dh = to_half_bits(rp[2 * k] * 7e-4f + 3e-5f);
      const uint16_t mh = to_half_bits(rp[2 * k + 1] * 3e-3f);
      std::memcpy(p, &dh, 2);
      std::memcpy(p + 2, &mh, 2);
    }
  }
}

// Random blocks: quantized bytes uniform, scales like a small model's (|d| ~ 1e-3..2e-2, some
// negative for Q4_1's minimum).
ops::GgufTensors random_gguf(int type, int64_t out, int64_t in, uint64_t seed, bool q8 = true) {
  at::manual_seed(seed);
  if (k_quant(type)) {
    const int64_t nsb = in / 256;
    auto blocks = at::randint(0, 256, {out, nsb * block_bytes(type)}, at::kByte);
    set_k_scales(type, blocks.data_ptr<uint8_t>(), out * nsb, seed + 1);
    return ops::make_gguf_tensors(blocks, static_cast<uint32_t>(type), out, in, q8);
  }
  const int64_t bb = block_bytes(type), nb = in / 32;
  auto blocks = at::randint(0, 256, {out, nb * bb}, at::kByte);
  auto d = at::rand({out, nb}) * 0.02 + 0.001;
  auto m = -(at::rand({out, nb}) * 0.1);
  auto* p = blocks.data_ptr<uint8_t>();
  const float* dp = d.data_ptr<float>();
  const float* mp = m.data_ptr<float>();
  for (int64_t k = 0; k < out * nb; ++k) {
    const uint16_t dh = to_half_bits(dp[k]);
    std::memcpy(p + k * bb, &dh, 2);
    if (type == 3 || type == 7) {
      const uint16_t mh = to_half_bits(mp[k]);
      std::memcpy(p + k * bb + 2, &mh, 2);
    }
  }
  return ops::make_gguf_tensors(blocks, static_cast<uint32_t>(type), out, in, q8);
}

// The dequantized weight by a plain loop over the layouts (independent of both the kernels and
// the reference's tensor ops).
at::Tensor plain_dequant(const ops::GgufTensors& w) {
  auto out = at::empty({w.out, w.in}, at::kFloat);
  float* o = out.data_ptr<float>();
  const auto* b = w.blocks.data_ptr<uint8_t>();
  if (k_quant(w.type)) {  // the load-time dequantizers (bit for bit with gguf-py)
    auto* f = w.type == 12   ? kernels::cpu::dequant_q4_k
              : w.type == 13 ? kernels::cpu::dequant_q5_k
                             : kernels::cpu::dequant_q6_k;
    f(b, o, w.out * w.in);
    return out;
  }
  const int64_t bb = block_bytes(w.type);
  for (int64_t k = 0; k < w.out * w.in / 32; ++k, b += bb, o += 32) {
    uint16_t dh, mh = 0;
    uint32_t qh = 0;
    const bool with_min = w.type == 3 || w.type == 7, five = w.type == 6 || w.type == 7;
    std::memcpy(&dh, b, 2);
    if (with_min) std::memcpy(&mh, b + 2, 2);
    if (five) std::memcpy(&qh, b + (with_min ? 4 : 2), 4);
    const uint8_t* qs = b + (with_min ? 4 : 2) + (five ? 4 : 0);
    const float d = kernels::cpu::fp16_to_fp32(dh), m = kernels::cpu::fp16_to_fp32(mh);
    for (int j = 0; j < 32; ++j) {
      if (w.type == 8) {
        o[j] = d * static_cast<float>(static_cast<int8_t>(b[2 + j]));
        continue;
      }
      int v = j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4);
      if (five) v |= static_cast<int>((qh >> j) & 1u) << 4;
      if (with_min)
        o[j] = d * static_cast<float>(v) + m;
      else
        o[j] = d * static_cast<float>(v - (five ? 16 : 8));
    }
  }
  return out;
}

std::vector<GgufSimd> simds() {
  std::vector<GgufSimd> s{GgufSimd::kScalar};
  if (kernels::cpu::gguf_has_avx2()) s.push_back(GgufSimd::kAvx2);
  if (kernels::cpu::gguf_has_avx512()) s.push_back(GgufSimd::kAvx512);
  return s;
}

// |a - b| <= tol * (1 + max|b|), elementwise over the whole output.
void expect_close(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  const double scale = 1.0 + b.abs().max().item<double>();
  const double err = (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
  EXPECT_LE(err, tol * scale) << what << ": max |diff| " << err << " (scale " << scale << ")";
}

class GgufOps : public ::testing::TestWithParam<int> {};

TEST_P(GgufOps, DequantizeIsBitExact) {
  const int type = GetParam();
  auto w = random_gguf(type, 37, width(type, 96), 1);
  auto plain = plain_dequant(w);
  EXPECT_TRUE(at::equal(ops::gguf_dequantize(w, at::kFloat), plain));
  EXPECT_TRUE(at::equal(ops::ref::gguf_dequantize(w, at::kFloat), plain));
  // the kernels' row dequantizer on a sub-range
  auto part = at::zeros({w.out, w.in});
  kernels::cpu::GgufView v{w.blocks.data_ptr<uint8_t>(), w.type, w.out, w.in};
  kernels::cpu::gguf_dequantize_rows(v, 5, 20, part.data_ptr<float>());
  EXPECT_TRUE(at::equal(part.narrow(0, 5, 15), plain.narrow(0, 5, 15)));
}

TEST_P(GgufOps, KernelsMatchReferenceOnEveryIsa) {
  const int type = GetParam();
  // 96: an odd number of 32-element blocks per row (the panels pad to block pairs)
  for (const int64_t in : {width(type, 64), width(type, 96), width(type, 576)}) {
    auto w = random_gguf(type, 45, in, 2 + in);
    kernels::cpu::GgufView v{w.blocks.data_ptr<uint8_t>(), w.type, w.out, w.in};
    auto wd = plain_dequant(w);
    auto bias = at::randn({w.out});
    // 9 rows and more: the int8 panels on AVX-512 (70: two chunks of rows, a partial tile)
    for (const int64_t rows : {1, 2, 3, 4, 5, 9, 16, 70}) {
      auto x = at::randn({rows, in});
      // q8: activations in int8 blocks
      const int64_t nb = rows * in / 32;
      std::vector<int8_t> qx(static_cast<size_t>(rows * in));
      std::vector<float> dx(static_cast<size_t>(nb)), sx(static_cast<size_t>(nb));
      kernels::cpu::gguf_quantize_q8(x.data_ptr<float>(), rows * in, qx.data(), dx.data(),
                                     sx.data());
      auto want_q8 = ops::ref::gguf_linear(x, w, bias);
      auto want_f32 = at::linear(x, wd, bias);
      for (auto simd : simds()) {
        const std::string what = "type " + std::to_string(type) + " in " + std::to_string(in) +
                                 " rows " + std::to_string(rows) + " simd " +
                                 std::to_string(static_cast<int>(simd));
        auto y = at::full({rows, w.out}, NAN);
        // two output ranges, as the threads split them
        kernels::cpu::gguf_gemm_q8(v, rows, qx.data(), dx.data(), sx.data(), bias.data_ptr<float>(),
                                   y.data_ptr<float>(), 0, 17, simd);
        kernels::cpu::gguf_gemm_q8(v, rows, qx.data(), dx.data(), sx.data(), bias.data_ptr<float>(),
                                   y.data_ptr<float>(), 17, w.out, simd);
        expect_close(y, want_q8, 1e-5, "q8 " + what);
        auto yf = at::full({rows, w.out}, NAN);
        kernels::cpu::gguf_gemm_f32(v, rows, x.data_ptr<float>(), bias.data_ptr<float>(),
                                    yf.data_ptr<float>(), 0, w.out, simd);
        expect_close(yf, want_f32, 1e-5, "f32 " + what);
      }
    }
  }
}

// Activations shaped like a real model's (in 1536 as SmolLM2's down_proj): most blocks led by one
// large value of either sign (the others a few int8 steps from zero), an all-zero block.
TEST_P(GgufOps, KernelsExactOnSpikyActivationBlocks) {
  const int type = GetParam();
  auto w = random_gguf(type, 40, 1536, 6);
  kernels::cpu::GgufView v{w.blocks.data_ptr<uint8_t>(), w.type, w.out, w.in};
  for (const int64_t rows : {1, 6, 16, 70}) {
    auto x = at::randn({rows, w.in});
    auto blocks = x.view({rows, w.in / 32, 32});
    blocks.select(2, 3).mul_(40);
    blocks.select(1, 1).select(1, 9).fill_(-300.f);
    blocks.select(1, 2).zero_();
    const int64_t nb = rows * w.in / 32;
    std::vector<int8_t> qx(static_cast<size_t>(rows * w.in));
    std::vector<float> dx(static_cast<size_t>(nb)), sx(static_cast<size_t>(nb));
    kernels::cpu::gguf_quantize_q8(x.data_ptr<float>(), rows * w.in, qx.data(), dx.data(),
                                   sx.data());
    const auto want = ops::ref::gguf_linear(x, w, {});
    for (auto simd : simds()) {
      auto y = at::full({rows, w.out}, NAN);
      kernels::cpu::gguf_gemm_q8(v, rows, qx.data(), dx.data(), sx.data(), nullptr,
                                 y.data_ptr<float>(), 0, w.out, simd);
      expect_close(
          y, want, 1e-5,
          "rows " + std::to_string(rows) + " simd " + std::to_string(static_cast<int>(simd)));
    }
  }
}

TEST_P(GgufOps, LinearOverEveryPath) {
  const int type = GetParam();
  for (const bool q8 : {true, false}) {
    auto w = random_gguf(type, 70, width(type, 128), 3, q8);
    auto bias = at::randn({w.out});
    // 1, 7 and 16 rows: fused kernels; 17 and 40 rows: the int8 panels (q8 on AVX-512) or
    // dequantized tiles + at::mm
    for (const int64_t rows : {1, 7, 16, 17, 40}) {
      auto x = at::randn({1, rows, w.in});
      auto want = ops::ref::gguf_linear(x, w, bias);
      expect_close(ops::gguf_linear(x, w, bias), want, 1e-5,
                   "rows " + std::to_string(rows) + (q8 ? " q8" : " f32"));
      expect_close(ops::gguf_linear(x, w, {}), ops::ref::gguf_linear(x, w, {}), 1e-5, "no bias");
      auto xb = x.to(at::kBFloat16);
      auto yb = ops::gguf_linear(xb, w, bias);
      EXPECT_EQ(yb.scalar_type(), at::kBFloat16);
      expect_close(yb.to(at::kFloat), ops::ref::gguf_linear(xb, w, bias).to(at::kFloat), 2e-2,
                   "bf16");
    }
  }
}

TEST_P(GgufOps, Q8ActivationsStayCloseToFp32) {
  // The int8 activation blocks cost a little precision: relative to the output scale, well
  // under 1 % on random data.
  auto w = random_gguf(GetParam(), 64, 256, 4);
  auto x = at::randn({3, 256});
  ASSERT_GT(plain_dequant(w).abs().max().item<float>(), 0.f);
  auto exact = at::linear(x, plain_dequant(w));
  expect_close(ops::gguf_linear(x, w, {}), exact, 1e-2, "q8 vs fp32");
}

TEST_P(GgufOps, RowsAndGradients) {
  const int64_t in = width(GetParam(), 64);
  auto w = random_gguf(GetParam(), 50, in, 5);
  auto ids = at::tensor(std::vector<int64_t>{3, 0, 49, 3}, at::kLong).reshape({2, 2});
  auto rows = ops::gguf_rows(w, ids, at::kFloat);
  EXPECT_EQ(rows.sizes().vec(), (std::vector<int64_t>{2, 2, in}));
  EXPECT_TRUE(at::equal(rows.reshape({4, in}), plain_dequant(w).index_select(0, ids.reshape(-1))));
  EXPECT_THROW(ops::gguf_rows(w, at::tensor(std::vector<int64_t>{50}, at::kLong), at::kFloat),
               Error);
  // gradients reach x through the dequantized weight
  auto x = at::randn({2, in}).requires_grad_(true);
  ops::gguf_linear(x, w, {}).sum().backward();
  auto x2 = x.detach().clone().requires_grad_(true);
  at::linear(x2, plain_dequant(w)).sum().backward();
  expect_close(x.grad(), x2.grad(), 1e-5, "grad");
}

INSTANTIATE_TEST_SUITE_P(Types, GgufOps, ::testing::Values(2, 3, 6, 7, 8, 12, 13, 14),
                         [](const auto& info) {
                           ops::GgufTensors t;
                           t.type = info.param;
                           return t.type_name();
                         });

TEST(GgufOpsErrors, BadTensorsAreClearErrors) {
  EXPECT_THROW(ops::make_gguf_tensors(at::zeros({4, 20}, at::kByte), 6, 4, 32), Error);  // Q5_0
  EXPECT_THROW(ops::make_gguf_tensors(at::zeros({4, 19}, at::kByte), 3, 4, 32), Error);
  EXPECT_THROW(ops::make_gguf_tensors(at::zeros({4, 20}, at::kByte), 3, 4, 30), Error);
  EXPECT_THROW(ops::make_gguf_tensors(at::zeros({4, 20}, at::kFloat), 3, 4, 32), Error);
  // K-quants: rows of whole 256-element super-blocks
  EXPECT_THROW(ops::make_gguf_tensors(at::zeros({4, 143}, at::kByte), 12, 4, 256), Error);
  EXPECT_THROW(ops::make_gguf_tensors(at::zeros({4, 144}, at::kByte), 12, 4, 128), Error);
  EXPECT_THROW(ops::make_gguf_tensors(at::zeros({4, 210}, at::kByte), 13, 4, 256), Error);
  EXPECT_NO_THROW(ops::make_gguf_tensors(at::zeros({4, 210}, at::kByte), 14, 4, 256));
  auto w = ops::make_gguf_tensors(at::zeros({4, 20}, at::kByte), 3, 4, 32);
  EXPECT_THROW(ops::gguf_linear(at::zeros({2, 31}), w, {}), Error);
  EXPECT_THROW(ops::gguf_linear(at::zeros({2, 32}), w, at::zeros({3})), Error);
}

}  // namespace

// The CUDA kernels (plugin) against the CPU ones on the same blocks: dequantization bit for bit,
// the fused GEMV (1..8 rows) and the dequantize + GEMM path (more rows) within rounding, in fp32,
// fp16 and bf16 activations. Skipped without a GPU.
TEST(GgufOps, cuda_KernelsMatchCpu) {
  if (!ops::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const at::Device cuda(at::kCUDA);
  for (const int type : {2, 3, 6, 7, 8, 12, 13, 14}) {
    auto w = random_gguf(type, 77, width(type, 576), 40 + type, /*q8=*/false);
    const auto wg = w.to(cuda);
    const auto want_w = ops::gguf_dequantize(w, at::kFloat);
    EXPECT_TRUE(at::equal(ops::gguf_dequantize(wg, at::kFloat).cpu(), want_w)) << "type " << type;
    auto bias = at::randn({w.out});
    for (const auto dtype : {at::kFloat, at::kHalf, at::kBFloat16}) {
      const double tol = dtype == at::kFloat ? 1e-5 : dtype == at::kHalf ? 5e-3 : 3e-2;
      for (const int64_t rows : {1, 3, 8, 9}) {
        auto x = at::randn({rows, w.in});
        const auto want = at::linear(x, want_w, bias);
        const auto got = ops::gguf_linear(x.to(cuda, dtype), wg, bias.to(cuda, dtype));
        EXPECT_EQ(got.scalar_type(), dtype);
        expect_close(got.cpu().to(at::kFloat), want, tol,
                     "type " + std::to_string(type) + " rows " + std::to_string(rows) + " " +
                         std::string(c10::toString(dtype)));
      }
    }
  }
}
