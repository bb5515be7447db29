// NF4 / FP4 matmul ops (src/ops/nf4.h) against their plain-libtorch references and the
// bit-exact quantizer (src/quant/nf4.h): dequantization bit for bit, nf4_linear on the fused GEMV
// path (one row), the fused multi-row GEMM (CPU, 2..32 rows) and the dequantize + GEMM path over
// {cpu, cuda} x {fp32, bf16, fp16}, the scalar, AVX2 and AVX-512 CPU kernels against each other
// and the double-precision result, and autograd through x and bias.
// CUDA cases skip on machines without a GPU.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/nf4.h"
#include "kernels/cpu/nf4_matmul.h"
#include "ops/cuda_plugin.h"
#include "ops/nf4.h"
#include "quant/nf4.h"

using namespace sllm;

namespace {

struct Quantized {
  quant::Nf4Weight q;
  ops::Nf4Tensors t;
};

// Random fp32 weight [out, in] (scaled like a real projection) quantized with bnb's layout.
Quantized make_weight(int64_t out, int64_t in, const std::string& type = "nf4",
                      int64_t blocksize = 64, bool double_quant = false, uint64_t seed = 1) {
  at::manual_seed(seed);
  auto w = (at::randn({out, in}) * 0.05).contiguous();
  quant::Nf4Options opt;
  opt.blocksize = blocksize;
  opt.quant_type = type;
  opt.double_quant = double_quant;
  Quantized r;
  r.q = quant::quantize_nf4(w.data_ptr<float>(), {out, in}, opt);
  const auto absmax = quant::dequantized_absmax(r.q);
  const float* code = kernels::cpu::quant4_code(type == "nf4" ? kernels::cpu::Quant4Type::kNf4
                                                              : kernels::cpu::Quant4Type::kFp4);
  r.t = ops::make_nf4_tensors(r.q.weight.data(), absmax.data(), code, out, in, blocksize);
  return r;
}

// max |a - b| relative to the scale of b (at least 1).
double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  auto af = a.to(at::kCPU, at::kFloat), bf = b.to(at::kCPU, at::kFloat);
  const double scale = std::max(1.0, bf.abs().max().item<double>());
  return (af - bf).abs().max().item<double>() / scale;
}

struct Shape {
  int64_t out, in, blocksize;
  const char* type;
  bool double_quant;
};
// Aligned rows, rows straddling blocks (in % blocksize != 0), odd in (odd row starts, odd total),
// fewer elements than a block, in % 16 != 0, and rows shorter than a block with in % 16 == 0
// (the grouped AVX-512 GEMV).
const std::vector<Shape> kShapes = {
    {96, 256, 64, "nf4", false}, {37, 90, 64, "nf4", true},   {37, 91, 64, "fp4", false},
    {3, 5, 64, "nf4", false},    {24, 200, 128, "fp4", true}, {40, 72, 256, "nf4", false},
    {20, 48, 64, "nf4", true},
};

TEST(Nf4Ops, DequantizeBitExactWithRefAndQuantizer) {
  for (const auto& s : kShapes) {
    SCOPED_TRACE(testing::Message() << s.out << "x" << s.in << " bs" << s.blocksize << " " << s.type
                                    << (s.double_quant ? " dq" : ""));
    auto w = make_weight(s.out, s.in, s.type, s.blocksize, s.double_quant);
    auto d = ops::nf4_dequantize(w.t, at::kFloat);
    auto r = ops::ref::nf4_dequantize(w.t, at::kFloat);
    ASSERT_EQ(d.sizes(), (std::vector<int64_t>{s.out, s.in}));
    EXPECT_TRUE(at::equal(d, r));
    std::vector<float> qd(static_cast<size_t>(s.out * s.in));
    quant::dequantize(w.q, qd.data());
    EXPECT_TRUE(at::equal(d, at::from_blob(qd.data(), {s.out, s.in}, at::kFloat)));
    for (auto dt : {at::kBFloat16, at::kHalf}) {
      auto dd = ops::nf4_dequantize(w.t, dt);
      EXPECT_EQ(dd.scalar_type(), dt);
      EXPECT_TRUE(at::equal(dd, r.to(dt))) << c10::toString(dt);
      EXPECT_TRUE(at::equal(ops::ref::nf4_dequantize(w.t, dt), r.to(dt)));
    }
  }
}

// The SIMD paths against the scalar one: dequantization bit for bit (any sub-range, odd starts),
// GEMV within fp32 rounding (summation order differs), over row ranges as threads split them.
class Nf4Kernels : public ::testing::TestWithParam<kernels::cpu::Nf4Simd> {
 protected:
  void SetUp() override {
    const bool ok = GetParam() == kernels::cpu::Nf4Simd::kAvx2 ? kernels::cpu::nf4_has_avx2()
                                                               : kernels::cpu::nf4_has_avx512();
    if (!ok) GTEST_SKIP() << "this CPU lacks the instruction set";
  }
};

TEST_P(Nf4Kernels, MatchScalar) {
  using kernels::cpu::Nf4Simd;
  const Nf4Simd simd = GetParam();
  for (const auto& s : kShapes) {
    SCOPED_TRACE(testing::Message() << s.out << "x" << s.in << " bs" << s.blocksize);
    auto w = make_weight(s.out, s.in, s.type, s.blocksize, s.double_quant);
    const uint8_t* p = w.t.packed.data_ptr<uint8_t>();
    const float* a = w.t.absmax.data_ptr<float>();
    const float* c = w.t.code.data_ptr<float>();
    const int64_t n = s.out * s.in;
    // The plain-libtorch dequantization every path must reproduce bit for bit.
    const auto rf = ops::ref::nf4_dequantize(w.t, at::kFloat).reshape({-1});
    const auto rh = ops::ref::nf4_dequantize(w.t, at::kBFloat16).reshape({-1});
    const float* rfp = rf.data_ptr<float>();
    const auto* rhp = reinterpret_cast<const uint16_t*>(rh.data_ptr<at::BFloat16>());
    // Whole range and ranges starting/ending at odd elements and inside blocks.
    for (auto [e0, e1] : std::vector<std::pair<int64_t, int64_t>>{
             {0, n}, {1, n}, {3, n - 1}, {n / 3, n / 2 + 1}, {0, std::min<int64_t>(n, 9)}}) {
      if (e0 >= e1) continue;
      std::vector<float> fs(n, -7.f), fv(n, -7.f);
      kernels::cpu::nf4_dequantize_f32(p, a, c, s.blocksize, e0, e1, fs.data(), Nf4Simd::kScalar);
      kernels::cpu::nf4_dequantize_f32(p, a, c, s.blocksize, e0, e1, fv.data(), simd);
      EXPECT_EQ(fs, fv) << "f32 [" << e0 << ", " << e1 << ")";
      for (int64_t i = 0; i < n; ++i) {  // only [e0, e1) is written
        if (i < e0 || i >= e1) {
          ASSERT_EQ(fs[i], -7.f) << i;
          ASSERT_EQ(fv[i], -7.f) << i;
        } else {
          ASSERT_EQ(fv[i], rfp[i]) << "f32 vs reference at " << i;
        }
      }
      std::vector<uint16_t> hs(n, 1), hv(n, 1);
      kernels::cpu::nf4_dequantize_bf16(p, a, c, s.blocksize, e0, e1, hs.data(), Nf4Simd::kScalar);
      kernels::cpu::nf4_dequantize_bf16(p, a, c, s.blocksize, e0, e1, hv.data(), simd);
      EXPECT_EQ(hs, hv) << "bf16 [" << e0 << ", " << e1 << ")";
      for (int64_t i = e0; i < e1; ++i) ASSERT_EQ(hv[i], rhp[i]) << "bf16 vs reference at " << i;
    }
    auto x = at::randn({s.in});
    auto bias = at::randn({s.out});
    auto ref = at::mv(ops::ref::nf4_dequantize(w.t, at::kDouble), x.to(at::kDouble)) +
               bias.to(at::kDouble);
    at::Tensor ys = at::zeros({s.out}), yv = at::zeros({s.out});
    kernels::cpu::nf4_gemv_f32(p, a, c, s.blocksize, s.in, x.data_ptr<float>(),
                               bias.data_ptr<float>(), ys.data_ptr<float>(), 0, s.out,
                               Nf4Simd::kScalar);
    // two ranges, as the ops layer splits rows across threads
    const int64_t mid = s.out / 2;
    kernels::cpu::nf4_gemv_f32(p, a, c, s.blocksize, s.in, x.data_ptr<float>(),
                               bias.data_ptr<float>(), yv.data_ptr<float>(), 0, mid, simd);
    kernels::cpu::nf4_gemv_f32(p, a, c, s.blocksize, s.in, x.data_ptr<float>(),
                               bias.data_ptr<float>(), yv.data_ptr<float>(), mid, s.out, simd);
    EXPECT_LE(rel_diff(ys, ref), 1e-5);
    EXPECT_LE(rel_diff(yv, ref), 1e-5);
    EXPECT_LE(rel_diff(yv, ys), 1e-5);
    // without bias
    at::Tensor y0 = at::zeros({s.out});
    kernels::cpu::nf4_gemv_f32(p, a, c, s.blocksize, s.in, x.data_ptr<float>(), nullptr,
                               y0.data_ptr<float>(), 0, s.out, simd);
    EXPECT_LE(rel_diff(y0, ref - bias.to(at::kDouble)), 1e-5);
  }
}

// A weight from random packed bytes and absmax, for blocksizes the quantizer does not make
// (multiples of 8 and 16 only, odd) that the kernels still take.
ops::Nf4Tensors random_weight(int64_t out, int64_t in, int64_t blocksize, uint64_t seed) {
  at::manual_seed(seed);
  const int64_t n = out * in;
  auto packed = at::randint(0, 256, {(n + 1) / 2}, at::kByte);
  auto absmax = at::rand({(n + blocksize - 1) / blocksize}) * 0.1 + 0.01;
  const float* code = kernels::cpu::quant4_code(kernels::cpu::Quant4Type::kNf4);
  return ops::make_nf4_tensors(packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(), code, out, in,
                               blocksize);
}

// Shapes for the multi-row GEMM beyond kShapes: each path's tiles (AVX-512: in % 16 == 0 and
// blocksize % 16 == 0; AVX2: both % 8 == 0; else a row buffer), blocks that start inside rows
// and end inside groups, an odd number of outputs (the AVX-512 single-output tail).
std::vector<ops::Nf4Tensors> gemm_weights() {
  std::vector<ops::Nf4Tensors> ws;
  for (const auto& s : kShapes)
    ws.push_back(make_weight(s.out, s.in, s.type, s.blocksize, s.double_quant).t);
  ws.push_back(make_weight(33, 576, "nf4", 128, true).t);  // 576 % 128 != 0, odd out
  ws.push_back(make_weight(65, 160, "nf4", 64, false).t);
  ws.push_back(random_weight(31, 96, 48, 5));  // AVX-512 tiles, blocks of 3 groups
  ws.push_back(random_weight(19, 72, 24, 6));  // AVX2 tiles, AVX-512 row buffer
  ws.push_back(random_weight(13, 45, 7, 7));   // odd blocksize and in everywhere
  ws.push_back(random_weight(9, 16, 16, 8));   // one group per row
  return ws;
}

// y[r, o] from the kernel over [0, out), as two ranges when split (the ops layer's threads).
at::Tensor run_gemm(const ops::Nf4Tensors& w, const at::Tensor& x, const at::Tensor& bias,
                    kernels::cpu::Nf4Simd simd, bool split) {
  const int64_t rows = x.size(0);
  auto y = at::full({rows, w.out}, -7.f);
  auto call = [&](int64_t o0, int64_t o1) {
    kernels::cpu::nf4_gemm_small_f32(
        w.packed.data_ptr<uint8_t>(), w.absmax.data_ptr<float>(), w.code.data_ptr<float>(),
        w.blocksize, w.out, w.in, rows, x.data_ptr<float>(),
        bias.defined() ? bias.data_ptr<float>() : nullptr, y.data_ptr<float>(), o0, o1, simd);
  };
  if (split) {
    const int64_t mid = w.out / 2 + (w.out > 2 ? 1 : 0);  // odd start when out is even
    call(0, mid);
    call(mid, w.out);
  } else {
    call(0, w.out);
  }
  return y;
}

// The multi-row GEMM on each path against the double-precision result, for R in {2, 3, 8, 16,
// 17} (one tile, a partial one, full tiles, tiles plus a single row), with and without bias;
// split output ranges give bit-identical results.
void check_gemm_small(kernels::cpu::Nf4Simd simd) {
  for (const auto& w : gemm_weights()) {
    auto dense = ops::ref::nf4_dequantize(w, at::kDouble);
    for (int64_t rows : {2, 3, 8, 16, 17}) {
      for (bool with_bias : {true, false}) {
        SCOPED_TRACE(testing::Message() << w.out << "x" << w.in << " bs" << w.blocksize << " rows "
                                        << rows << " bias " << with_bias);
        auto x = at::randn({rows, w.in});
        auto bias = with_bias ? at::randn({w.out}) : at::Tensor();
        auto ref = at::matmul(x.to(at::kDouble), dense.t());
        if (with_bias) ref = ref + bias.to(at::kDouble);
        auto y = run_gemm(w, x, bias, simd, false);
        EXPECT_LE(rel_diff(y, ref), 1e-5);
        EXPECT_TRUE(at::equal(run_gemm(w, x, bias, simd, true), y));
      }
    }
  }
}

TEST(Nf4Ops, GemmSmallScalarMatchesDouble) {
  at::manual_seed(11);
  check_gemm_small(kernels::cpu::Nf4Simd::kScalar);
}

TEST_P(Nf4Kernels, GemmSmallMatchesDouble) {
  at::manual_seed(12);
  check_gemm_small(GetParam());
}

// Every path against the scalar one on the same inputs (same decoded weights, fp32 summation in a
// different order), and rows = 1 and 0.
TEST_P(Nf4Kernels, GemmSmallMatchesScalar) {
  at::manual_seed(13);
  for (const auto& w : gemm_weights()) {
    SCOPED_TRACE(testing::Message() << w.out << "x" << w.in << " bs" << w.blocksize);
    for (int64_t rows : {1, 5, 16}) {
      auto x = at::randn({rows, w.in});
      auto bias = at::randn({w.out});
      auto ys = run_gemm(w, x, bias, kernels::cpu::Nf4Simd::kScalar, false);
      EXPECT_LE(rel_diff(run_gemm(w, x, bias, GetParam(), true), ys), 1e-5) << rows;
    }
    auto y = at::full({1, w.out}, -7.f);
    kernels::cpu::nf4_gemm_small_f32(w.packed.data_ptr<uint8_t>(), w.absmax.data_ptr<float>(),
                                     w.code.data_ptr<float>(), w.blocksize, w.out, w.in, 0, nullptr,
                                     nullptr, y.data_ptr<float>(), 0, w.out, GetParam());
    EXPECT_TRUE(at::equal(y, at::full({1, w.out}, -7.f)));  // rows = 0 writes nothing
  }
}

INSTANTIATE_TEST_SUITE_P(Nf4, Nf4Kernels,
                         ::testing::Values(kernels::cpu::Nf4Simd::kAvx2,
                                           kernels::cpu::Nf4Simd::kAvx512),
                         [](const auto& info) {
                           return info.param == kernels::cpu::Nf4Simd::kAvx2 ? "avx2" : "avx512";
                         });

struct Nf4Case {
  const char* device;
  at::ScalarType dtype;
  double tol;  // max |diff| / max(1, max |ref|)
};

class Nf4Parity : public ::testing::TestWithParam<Nf4Case> {
 protected:
  void SetUp() override {
    if (std::string(GetParam().device) == "cuda" && !sllm::ops::cuda_available())
      GTEST_SKIP() << "no CUDA GPU";
  }
  at::Device dev() const { return at::Device(GetParam().device); }
  at::Tensor rnd(std::vector<int64_t> s) { return at::randn(s).to(dev(), GetParam().dtype); }
  void check_linear(const ops::Nf4Tensors& w, std::vector<int64_t> xs, bool with_bias) {
    SCOPED_TRACE(testing::Message()
                 << "x " << c10::str(at::IntArrayRef(xs)) << " bias " << with_bias);
    auto x = rnd(xs);
    auto b = with_bias ? rnd({w.out}) : at::Tensor();
    auto y = ops::nf4_linear(x, w, b);
    auto r = ops::ref::nf4_linear(x, w, b);
    ASSERT_EQ(y.sizes(), r.sizes());
    EXPECT_EQ(y.scalar_type(), x.scalar_type());
    EXPECT_EQ(y.device(), x.device());
    EXPECT_LE(rel_diff(y, r), GetParam().tol);
  }
};

TEST_P(Nf4Parity, DequantizeMatchesCpuBitExact) {
  for (const auto& s : kShapes) {
    auto w = make_weight(s.out, s.in, s.type, s.blocksize, s.double_quant);
    auto expect = ops::ref::nf4_dequantize(w.t, at::kFloat).to(GetParam().dtype);
    auto got = ops::nf4_dequantize(w.t.to(dev()), GetParam().dtype);
    EXPECT_EQ(got.device(), dev());
    EXPECT_TRUE(at::equal(got.cpu(), expect)) << s.out << "x" << s.in;
  }
}

TEST_P(Nf4Parity, LinearOneRowFusedGemv) {
  at::manual_seed(3);
  for (const auto& s : kShapes) {
    auto w = make_weight(s.out, s.in, s.type, s.blocksize, s.double_quant).t.to(dev());
    check_linear(w, {1, s.in}, true);
    check_linear(w, {s.in}, false);
    check_linear(w, {1, 1, s.in}, false);
  }
  // decode shapes of the default model, split across threads
  for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{576, 1536}, {1536, 576}}) {
    auto w = make_weight(out, in).t.to(dev());
    check_linear(w, {1, in}, false);
  }
}

TEST_P(Nf4Parity, LinearManyRows) {
  at::manual_seed(4);
  for (const auto& s : kShapes) {
    auto w = make_weight(s.out, s.in, s.type, s.blocksize, s.double_quant).t.to(dev());
    check_linear(w, {4, s.in}, true);      // CUDA: multi-row GEMV
    check_linear(w, {2, 3, s.in}, false);  // CUDA: multi-row GEMV, 3-d
    check_linear(w, {8, s.in}, true);      // CUDA: the most rows the GEMV takes
    check_linear(w, {17, s.in}, true);     // CUDA: dequantize + GEMM; CPU: multi-row GEMM
    check_linear(w, {33, s.in}, true);     // dequantize + GEMM everywhere
  }
}

// Batched decode sizes (CPU: the fused multi-row GEMM), 2-d and 3-d, with and without bias.
TEST_P(Nf4Parity, LinearSmallBatch) {
  at::manual_seed(5);
  for (const auto& s : kShapes) {
    auto w = make_weight(s.out, s.in, s.type, s.blocksize, s.double_quant).t.to(dev());
    for (int64_t rows : {2, 3, 5, 8, 16, 32}) check_linear(w, {rows, s.in}, rows % 2 == 0);
    check_linear(w, {4, 1, s.in}, true);
    check_linear(w, {3, 4, s.in}, false);
  }
  for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{576, 1536}, {1536, 576}}) {
    auto w = make_weight(out, in).t.to(dev());
    check_linear(w, {8, in}, true);
    check_linear(w, {16, in}, false);
  }
}

// On an AVX2 / AVX-512 CPU, nf4_linear for 2..32 rows (kCpuGemmSmallMaxRows in src/ops/nf4.cpp)
// is the multi-row kernel itself (bit for bit, whatever the thread split); it agrees with
// ref::nf4_linear everywhere; 1 row stays on the GEMV, 33 rows go to dequantize + GEMM.
TEST(Nf4Ops, LinearCpuSmallBatchRunsGemmKernel) {
  at::manual_seed(6);
  for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{576, 1536}, {37, 90}}) {
    auto w = make_weight(out, in).t;
    for (int64_t rows : {2, 3, 8, 16, 17, 32}) {
      SCOPED_TRACE(testing::Message() << out << "x" << in << " rows " << rows);
      auto x = at::randn({rows, in});
      auto bias = at::randn({out});
      auto y = ops::nf4_linear(x, w, bias);
      EXPECT_LE(rel_diff(y, ops::ref::nf4_linear(x, w, bias)), 1e-5);
      auto y3 = ops::nf4_linear(x.reshape({1, rows, in}), w, at::Tensor());
      EXPECT_EQ(y3.sizes(), (std::vector<int64_t>{1, rows, out}));
      if (!kernels::cpu::nf4_has_avx2()) continue;  // the op takes the kernel on AVX2+ only
      EXPECT_TRUE(at::equal(y, run_gemm(w, x, bias, kernels::cpu::Nf4Simd::kAuto, false)));
      EXPECT_TRUE(at::equal(y3.reshape({rows, out}),
                            run_gemm(w, x, at::Tensor(), kernels::cpu::Nf4Simd::kAuto, true)));
    }
    auto x33 = at::randn({33, in});
    EXPECT_LE(
        rel_diff(ops::nf4_linear(x33, w, at::Tensor()), ops::ref::nf4_linear(x33, w, at::Tensor())),
        1e-5);
  }
}

TEST_P(Nf4Parity, NoGradCallRunsFusedPath) {
  auto w = make_weight(64, 128).t.to(dev());
  auto x = rnd({1, 128}).requires_grad_(GetParam().dtype == at::kFloat);
  at::Tensor y;
  {
    at::NoGradGuard g;
    y = ops::nf4_linear(x, w, at::Tensor());
  }
  EXPECT_FALSE(y.requires_grad());
  auto xd = x.detach();
  // grad mode on but nothing requires grad: still the plain path
  auto y2 = ops::nf4_linear(xd, w, at::Tensor());
  EXPECT_FALSE(y2.requires_grad());
  EXPECT_LE(rel_diff(y, ops::ref::nf4_linear(xd, w, at::Tensor())), GetParam().tol);
  EXPECT_TRUE(at::equal(y, y2));
}

INSTANTIATE_TEST_SUITE_P(
    Nf4, Nf4Parity,
    ::testing::Values(Nf4Case{"cpu", at::kFloat, 1e-5}, Nf4Case{"cpu", at::kBFloat16, 2e-2},
                      Nf4Case{"cpu", at::kHalf, 5e-3}, Nf4Case{"cuda", at::kFloat, 1e-5},
                      Nf4Case{"cuda", at::kBFloat16, 3e-2}, Nf4Case{"cuda", at::kHalf, 5e-3}),
    [](const auto& info) {
      return std::string(info.param.device) + "_" + std::string(c10::toString(info.param.dtype));
    });

class Nf4Autograd : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (std::string(GetParam()) == "cuda" && !sllm::ops::cuda_available())
      GTEST_SKIP() << "no CUDA GPU";
  }
};

// grad through nf4_linear == grad through at::linear with the dequantized weight, for x (1 row:
// the GEMV forward; many rows; 3-d) and bias.
TEST_P(Nf4Autograd, GradMatchesDenseLinear) {
  const at::Device dev(GetParam());
  for (const auto& s : kShapes) {
    auto w = make_weight(s.out, s.in, s.type, s.blocksize, s.double_quant).t.to(dev);
    auto dense = ops::ref::nf4_dequantize(w, at::kFloat);
    for (auto xs : std::vector<std::vector<int64_t>>{{1, s.in}, {5, s.in}, {2, 3, s.in}}) {
      SCOPED_TRACE(testing::Message()
                   << s.out << "x" << s.in << " x " << xs.size() << "-d " << xs[0]);
      auto x0 = at::randn(xs, dev), b0 = at::randn({s.out}, dev);
      auto x1 = x0.clone().requires_grad_(), b1 = b0.clone().requires_grad_();
      auto x2 = x0.clone().requires_grad_(), b2 = b0.clone().requires_grad_();
      auto y1 = ops::nf4_linear(x1, w, b1);
      auto y2 = at::linear(x2, dense, b2);
      ASSERT_TRUE(y1.requires_grad());
      EXPECT_LE(rel_diff(y1.detach(), y2.detach()), 1e-5);
      auto g = at::randn_like(y2);
      (y1 * g).sum().backward();
      (y2 * g).sum().backward();
      ASSERT_TRUE(x1.grad().defined());
      ASSERT_TRUE(b1.grad().defined());
      EXPECT_LE(rel_diff(x1.grad(), x2.grad()), 1e-5);
      EXPECT_LE(rel_diff(b1.grad(), b2.grad()), 1e-5);
    }
  }
}

TEST_P(Nf4Autograd, BiasOnlyAndNoBias) {
  const at::Device dev(GetParam());
  auto w = make_weight(48, 128).t.to(dev);
  auto dense = ops::ref::nf4_dequantize(w, at::kFloat);
  // bias requires grad, x does not
  auto x = at::randn({3, 128}, dev);
  auto b = at::randn({48}, dev).requires_grad_();
  ops::nf4_linear(x, w, b).sum().backward();
  ASSERT_TRUE(b.grad().defined());
  EXPECT_LE(rel_diff(b.grad(), at::full({48}, 3.0, dev)), 1e-6);
  // x requires grad, no bias
  auto x1 = at::randn({1, 128}, dev).requires_grad_();
  auto x2 = x1.detach().clone().requires_grad_();
  ops::nf4_linear(x1, w, at::Tensor()).pow(2).sum().backward();
  at::linear(x2, dense).pow(2).sum().backward();
  EXPECT_LE(rel_diff(x1.grad(), x2.grad()), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Nf4, Nf4Autograd, ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return std::string(info.param); });

TEST(Nf4Ops, TensorsToAndNbytes) {
  auto w = make_weight(37, 90, "nf4", 64, true).t;
  const int64_t n = 37 * 90;
  EXPECT_EQ(w.nbytes(), (n + 1) / 2 + ((n + 63) / 64) * 4 + 16 * 4);
  auto c = w.to(at::kCPU);
  EXPECT_EQ(c.out, 37);
  EXPECT_EQ(c.in, 90);
  EXPECT_EQ(c.blocksize, 64);
  EXPECT_TRUE(at::equal(c.packed, w.packed));
}

TEST(Nf4Ops, RejectsBadTensors) {
  auto w = make_weight(16, 64).t;
  auto bad = w;
  bad.packed = w.packed.narrow(0, 0, w.packed.numel() - 1);
  EXPECT_THROW(ops::nf4_dequantize(bad, at::kFloat), Error);
  bad = w;
  bad.absmax = w.absmax.to(at::kHalf);
  EXPECT_THROW(ops::nf4_dequantize(bad, at::kFloat), Error);
  bad = w;
  bad.code = w.code.narrow(0, 0, 8);
  EXPECT_THROW(ops::nf4_linear(at::randn({1, 64}), bad, at::Tensor()), Error);
  EXPECT_THROW(ops::nf4_linear(at::randn({1, 63}), w, at::Tensor()), Error);
  EXPECT_THROW(ops::nf4_linear(at::randn({1, 64}), w, at::randn({15})), Error);
}

}  // namespace
