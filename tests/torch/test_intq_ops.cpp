// Integer-quantized matmul ops (src/ops/intq.h) against their plain-libtorch references:
// IntQ dequantization bit for bit (with and without act-order perm, 4- and 8-bit storage), the
// scalar / AVX2 / AVX-512 CPU kernels against each other and the double-precision result,
// intq_linear over the GEMV (1 row), multi-row (2..32) and dequantize + GEMM paths, LLM.int8()
// with and without outlier columns over the int8 kernel and the int8 GEMM path, gradients, and
// CUDA parity over {fp32, bf16, fp16} (skipped without a GPU).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/intq_matmul.h"
#include "ops/cuda_plugin.h"
#include "ops/intq.h"

using namespace sllm;
using kernels::cpu::IntQSimd;

namespace {

struct RawIntQ {
  std::vector<uint8_t> q;  // [out, in] storage order
  std::vector<float> scales, zeros;
  std::vector<int64_t> perm;
  ops::IntQTensors t;
};

// Random values in [0, 2^bits), scales like a real projection's, integer zeros (fractional ones
// when frac_zeros, as some AWQ exports), optionally a random act-order permutation.
RawIntQ random_intq(int64_t out, int64_t in, int bits, int64_t group_size, bool with_perm,
                    uint64_t seed, bool frac_zeros = false) {
  at::manual_seed(seed);
  RawIntQ r;
  const int64_t groups = (in + group_size - 1) / group_size;
  auto q = at::randint(0, 1 << bits, {out, in}, at::kByte);
  auto s = at::rand({out, groups}) * 0.02 + 0.002;
  auto z = frac_zeros ? at::rand({out, groups}) * ((1 << bits) - 1)
                      : at::randint(0, 1 << bits, {out, groups}).to(at::kFloat);
  r.q.assign(q.data_ptr<uint8_t>(), q.data_ptr<uint8_t>() + q.numel());
  r.scales.assign(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
  r.zeros.assign(z.data_ptr<float>(), z.data_ptr<float>() + z.numel());
  if (with_perm) {
    auto p = at::randperm(in, at::kLong);
    r.perm.assign(p.data_ptr<int64_t>(), p.data_ptr<int64_t>() + in);
  }
  r.t = ops::make_intq_tensors(r.q.data(), r.scales.data(), r.zeros.data(),
                               with_perm ? r.perm.data() : nullptr, bits, group_size, out, in);
  return r;
}

// max |a - b| relative to the scale of b (at least 1).
double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  auto af = a.to(at::kCPU, at::kDouble), bf = b.to(at::kCPU, at::kDouble);
  const double scale = std::max(1.0, bf.abs().max().item<double>());
  return (af - bf).abs().max().item<double>() / scale;
}

struct Shape {
  int64_t out, in;
};
// Aligned; in % 128 != 0 (576: the default model's hidden size, a partial last group of 128);
// in % 16 != 0 (scalar for storage 4, AVX2 for storage 8); odd out.
const std::vector<Shape> kShapes = {{96, 256}, {40, 576}, {33, 72}, {7, 90}};

// Group sizes per shape: 32, 64, 128 and the whole row, and for in = 90 sizes that split rows
// unevenly (scalar everywhere).
std::vector<int64_t> group_sizes(int64_t in) {
  if (in == 90) return {30, 45, 64, 90};
  return {32, 64, 128, in};
}

TEST(IntQOps, DequantizeBitExactWithRefAndRawArrays) {
  for (const auto& s : kShapes)
    for (int bits : {4, 3, 8, 6})
      for (int64_t gs : group_sizes(s.in))
        for (bool perm : {false, true}) {
          SCOPED_TRACE(testing::Message() << s.out << "x" << s.in << " bits " << bits << " gs "
                                          << gs << " perm " << perm);
          auto w = random_intq(s.out, s.in, bits, gs, perm, 1, bits == 3);
          auto d = ops::intq_dequantize(w.t, at::kFloat);
          auto r = ops::ref::intq_dequantize(w.t, at::kFloat);
          ASSERT_EQ(d.sizes(), (std::vector<int64_t>{s.out, s.in}));
          EXPECT_TRUE(at::equal(d, r));
          // from the raw arrays: column perm[j] of the output is storage column j
          const int64_t groups = w.t.groups();
          auto expect = at::empty({s.out, s.in});
          auto* e = expect.data_ptr<float>();
          for (int64_t o = 0; o < s.out; ++o)
            for (int64_t j = 0; j < s.in; ++j) {
              const int64_t g = o * groups + j / gs;
              e[o * s.in + (perm ? w.perm[j] : j)] =
                  (static_cast<float>(w.q[o * s.in + j]) - w.zeros[g]) * w.scales[g];
            }
          EXPECT_TRUE(at::equal(d, expect));
          for (auto dt : {at::kBFloat16, at::kHalf}) {
            EXPECT_TRUE(at::equal(ops::intq_dequantize(w.t, dt), r.to(dt))) << c10::toString(dt);
            EXPECT_TRUE(at::equal(ops::ref::intq_dequantize(w.t, dt), r.to(dt)));
          }
        }
}

kernels::cpu::IntQView view_of(const ops::IntQTensors& t) {
  kernels::cpu::IntQView v;
  v.q = t.qweight.data_ptr<uint8_t>();
  v.scales = t.scales.data_ptr<float>();
  v.zeros = t.zeros.data_ptr<float>();
  v.storage_bits = t.storage_bits();
  v.group_size = t.group_size;
  v.out = t.out;
  v.in = t.in;
  return v;
}

// The storage-order dense weight in double, for references.
at::Tensor storage_dense(const RawIntQ& w) {
  auto d = ops::ref::intq_dequantize(w.t, at::kDouble);
  if (w.t.perm.defined()) d = d.index_select(1, w.t.perm);
  return d;
}

// y [rows, out] from intq_gemm_small_f32 (or the GEMV for one row when gemv) over [0, out), as two
// ranges when split (the ops layer's threads).
at::Tensor run_kernel(const RawIntQ& w, const at::Tensor& x, const at::Tensor& bias, IntQSimd simd,
                      bool split, bool gemv) {
  const auto v = view_of(w.t);
  const int64_t rows = x.size(0);
  auto y = at::full({rows, v.out}, -7.f);
  auto call = [&](int64_t o0, int64_t o1) {
    const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;
    if (gemv)
      kernels::cpu::intq_gemv_f32(v, x.data_ptr<float>(), bp, y.data_ptr<float>(), o0, o1, simd);
    else
      kernels::cpu::intq_gemm_small_f32(v, rows, x.data_ptr<float>(), bp, y.data_ptr<float>(), o0,
                                        o1, simd);
  };
  if (split) {
    const int64_t mid = v.out / 2 + (v.out > 2 ? 1 : 0);  // odd start when out is even
    call(0, mid);
    call(mid, v.out);
  } else {
    call(0, v.out);
  }
  return y;
}

class IntQKernels : public ::testing::TestWithParam<IntQSimd> {
 protected:
  void SetUp() override {
    const IntQSimd p = GetParam();
    const bool ok = p == IntQSimd::kScalar ? true
                    : p == IntQSimd::kAvx2 ? kernels::cpu::intq_has_avx2()
                                           : kernels::cpu::intq_has_avx512();
    if (!ok) GTEST_SKIP() << "this CPU lacks the instruction set";
  }
};

// Every path: dequantization bit for bit with the scalar one (row ranges, with perm), the GEMV
// and the multi-row GEMM against double precision, split ranges bit-identical to whole ones.
TEST_P(IntQKernels, MatchScalarAndDouble) {
  const IntQSimd simd = GetParam();
  at::manual_seed(7);
  for (const auto& s : kShapes)
    for (int bits : {4, 8})
      for (int64_t gs : group_sizes(s.in))
        for (bool perm : {false, true}) {
          SCOPED_TRACE(testing::Message() << s.out << "x" << s.in << " bits " << bits << " gs "
                                          << gs << " perm " << perm);
          auto w = random_intq(s.out, s.in, bits, gs, perm, 3, gs == 64);
          const auto v = view_of(w.t);
          const int64_t* pp = perm ? w.perm.data() : nullptr;
          auto ds = at::full({s.out, s.in}, -7.f), dv = at::full({s.out, s.in}, -7.f);
          kernels::cpu::intq_dequantize_f32(v, pp, 0, s.out, ds.data_ptr<float>(),
                                            IntQSimd::kScalar);
          kernels::cpu::intq_dequantize_f32(v, pp, 0, s.out / 2, dv.data_ptr<float>(), simd);
          kernels::cpu::intq_dequantize_f32(v, pp, s.out / 2, s.out, dv.data_ptr<float>(), simd);
          EXPECT_TRUE(at::equal(ds, dv));
          EXPECT_TRUE(at::equal(ds, ops::ref::intq_dequantize(w.t, at::kFloat)));

          const auto dense = storage_dense(w);
          for (int64_t rows : {1, 2, 3, 8, 9, 17}) {
            for (bool with_bias : {true, false}) {
              SCOPED_TRACE(testing::Message() << "rows " << rows << " bias " << with_bias);
              auto x = at::randn({rows, s.in});
              auto bias = with_bias ? at::randn({s.out}) : at::Tensor();
              auto ref = at::matmul(x.to(at::kDouble), dense.t());
              if (with_bias) ref = ref + bias.to(at::kDouble);
              auto y = run_kernel(w, x, bias, simd, false, false);
              EXPECT_LE(rel_diff(y, ref), 1e-5);
              EXPECT_TRUE(at::equal(run_kernel(w, x, bias, simd, true, false), y));
              if (rows == 1) {
                auto yg = run_kernel(w, x, bias, simd, true, true);
                EXPECT_LE(rel_diff(yg, ref), 1e-5);
              }
            }
          }
        }
}

// LLM.int8() kernels: exact int32 products on every path (same result as the scalar one up to
// the fp32 epilogue), quantization bit for bit.
TEST_P(IntQKernels, Int8MatchScalar) {
  const IntQSimd simd = GetParam();
  at::manual_seed(8);
  for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{64, 576}, {33, 100}, {5, 31}}) {
    auto w = at::randint(-128, 128, {out, in}, at::kChar);
    auto scb = at::rand({out}) + 0.1;
    for (int64_t rows : {1, 3, 8, 11}) {
      SCOPED_TRACE(testing::Message() << out << "x" << in << " rows " << rows);
      auto x = at::randn({rows, in}) * 2;
      auto q0 = at::empty({rows, in}, at::kChar), q1 = at::empty({rows, in}, at::kChar);
      auto s0 = at::empty({rows}), s1 = at::empty({rows});
      const int64_t idx[2] = {1, in - 1};
      kernels::cpu::int8_quantize_rows(x.data_ptr<float>(), in, 5.f, idx, 2, q0.data_ptr<int8_t>(),
                                       s0.data_ptr<float>(), 0, rows, IntQSimd::kScalar);
      kernels::cpu::int8_quantize_rows(x.data_ptr<float>(), in, 5.f, idx, 2, q1.data_ptr<int8_t>(),
                                       s1.data_ptr<float>(), 0, rows, simd);
      EXPECT_TRUE(at::equal(q0, q1));
      EXPECT_TRUE(at::equal(s0, s1));
      auto y0 = at::zeros({rows, out}), y1 = at::zeros({rows, out});
      auto bias = at::randn({out});
      kernels::cpu::int8_gemm_small(w.data_ptr<int8_t>(), scb.data_ptr<float>(), out, in, rows,
                                    q0.data_ptr<int8_t>(), s0.data_ptr<float>(),
                                    bias.data_ptr<float>(), y0.data_ptr<float>(), 0, out,
                                    IntQSimd::kScalar);
      kernels::cpu::int8_gemm_small(w.data_ptr<int8_t>(), scb.data_ptr<float>(), out, in, rows,
                                    q0.data_ptr<int8_t>(), s0.data_ptr<float>(),
                                    bias.data_ptr<float>(), y1.data_ptr<float>(), 0, out / 2, simd);
      kernels::cpu::int8_gemm_small(
          w.data_ptr<int8_t>(), scb.data_ptr<float>(), out, in, rows, q0.data_ptr<int8_t>(),
          s0.data_ptr<float>(), bias.data_ptr<float>(), y1.data_ptr<float>(), out / 2, out, simd);
      auto acc = at::matmul(q0.to(at::kDouble), w.to(at::kDouble).t());
      auto ref = acc * s0.to(at::kDouble).unsqueeze(1) * scb.to(at::kDouble) / (127.0 * 127.0) +
                 bias.to(at::kDouble);
      EXPECT_LE(rel_diff(y0, ref), 1e-6);
      EXPECT_LE(rel_diff(y1, ref), 1e-6);
      EXPECT_LE(rel_diff(y1, y0), 1e-6);
      // The quantization in plain libtorch: row absmax below the threshold, round half to even,
      // the outlier columns zeroed.
      auto xa = x.abs();
      auto sref = at::where(xa < 5.f, xa, at::zeros_like(xa)).amax(1);
      auto qref = at::round(x * (127.f / sref).unsqueeze(1)).clamp(-128, 127).to(at::kChar);
      qref.select(1, 1).zero_();
      qref.select(1, in - 1).zero_();
      EXPECT_TRUE(at::equal(s1, sref));
      EXPECT_TRUE(at::equal(q1, qref));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(IntQ, IntQKernels,
                         ::testing::Values(IntQSimd::kScalar, IntQSimd::kAvx2, IntQSimd::kAvx512),
                         [](const auto& info) {
                           return info.param == IntQSimd::kScalar ? std::string("scalar")
                                  : info.param == IntQSimd::kAvx2 ? std::string("avx2")
                                                                  : std::string("avx512");
                         });

struct Case {
  const char* device;
  at::ScalarType dtype;
  double tol;  // max |diff| / max(1, max |ref|)
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  return std::string(info.param.device) + "_" + std::string(c10::toString(info.param.dtype));
}

class IntQParity : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    if (std::string(GetParam().device) == "cuda" && !sllm::ops::cuda_available())
      GTEST_SKIP() << "no CUDA GPU";
  }
  at::Device dev() const { return at::Device(GetParam().device); }
  at::Tensor rnd(std::vector<int64_t> s) { return at::randn(s).to(dev(), GetParam().dtype); }
};

TEST_P(IntQParity, DequantizeMatchesCpuBitExact) {
  for (const auto& s : kShapes)
    for (int bits : {4, 8})
      for (bool perm : {false, true}) {
        auto w = random_intq(s.out, s.in, bits, group_sizes(s.in)[1], perm, 2);
        auto expect = ops::ref::intq_dequantize(w.t, at::kFloat).to(GetParam().dtype);
        auto got = ops::intq_dequantize(w.t.to(dev()), GetParam().dtype);
        EXPECT_EQ(got.device(), dev());
        EXPECT_TRUE(at::equal(got.cpu(), expect)) << s.out << "x" << s.in << " bits " << bits;
      }
}

// Rows 1 (GEMV), 2 / 7 / 32 (CPU multi-row kernel; CUDA GEMV up to 8 rows) and 33 / 100
// (dequantize + GEMM), every group size, with and without perm and bias, 2-d and 3-d x.
TEST_P(IntQParity, LinearMatchesRef) {
  at::manual_seed(4);
  for (const auto& s : kShapes)
    for (int bits : {4, 8})
      for (int64_t gs : group_sizes(s.in))
        for (bool perm : {false, true}) {
          auto w = random_intq(s.out, s.in, bits, gs, perm, 5).t.to(dev());
          int k = 0;
          for (int64_t rows : {1, 2, 7, 32, 33, 100}) {
            const bool with_bias = (k++ + perm) % 2 == 0;
            SCOPED_TRACE(testing::Message()
                         << s.out << "x" << s.in << " bits " << bits << " gs " << gs << " perm "
                         << perm << " rows " << rows << " bias " << with_bias);
            auto x = rows == 32 ? rnd({4, 8, s.in}) : rnd({rows, s.in});
            auto b = with_bias ? rnd({s.out}) : at::Tensor();
            auto y = ops::intq_linear(x, w, b);
            auto r = ops::ref::intq_linear(x, w, b);
            ASSERT_EQ(y.sizes(), r.sizes());
            EXPECT_EQ(y.scalar_type(), x.scalar_type());
            EXPECT_EQ(y.device(), x.device());
            EXPECT_LE(rel_diff(y, r), GetParam().tol);
          }
        }
}

// Decode shapes of the default model (threads split the outputs), one row and a small batch.
TEST_P(IntQParity, LinearModelShapes) {
  at::manual_seed(6);
  for (auto [out, in] :
       std::vector<std::pair<int64_t, int64_t>>{{576, 576}, {3072, 576}, {576, 1536}}) {
    auto w = random_intq(out, in, 4, 128, false, 9).t.to(dev());
    for (int64_t rows : {1, 4, 16}) {
      auto x = rnd({rows, in});
      EXPECT_LE(
          rel_diff(ops::intq_linear(x, w, at::Tensor()), ops::ref::intq_linear(x, w, at::Tensor())),
          GetParam().tol)
          << out << "x" << in << " rows " << rows;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    IntQ, IntQParity,
    ::testing::Values(Case{"cpu", at::kFloat, 1e-5}, Case{"cpu", at::kBFloat16, 2e-2},
                      Case{"cpu", at::kHalf, 5e-3}, Case{"cuda", at::kFloat, 1e-5},
                      Case{"cuda", at::kBFloat16, 3e-2}, Case{"cuda", at::kHalf, 5e-3}),
    case_name);

// A random LLM.int8() weight: int8 in [-127, 127] with a row absmax of 0.1..0.2.
ops::Int8Tensors random_int8(int64_t out, int64_t in, double threshold, uint64_t seed) {
  at::manual_seed(seed);
  auto q = at::randint(-127, 128, {out, in}, at::kChar);
  auto scb = at::rand({out}) * 0.1 + 0.1;
  return ops::make_int8_tensors(q.data_ptr<int8_t>(), scb.data_ptr<float>(), out, in, threshold);
}

class Int8Parity : public IntQParity {};

// Without outliers (threshold 6, |x| small), with planted outlier columns (|x| > 6 in one row of
// a column), and with the decomposition off (threshold 0); rows on the int8 kernel (<= 4) and the
// int8 GEMM; bitsandbytes' arithmetic (fp16 x) and the fp32 one.
TEST_P(Int8Parity, LinearMatchesRef) {
  at::manual_seed(10);
  for (bool bnb : {true, false})
    for (auto [out, in] : std::vector<std::pair<int64_t, int64_t>>{{96, 256}, {576, 1536}, {7, 90}})
      for (double thr : {6.0, 0.0})
        for (bool outliers : {false, true})
          for (int64_t rows : {1, 2, 4, 5, 33, 100}) {
            const bool with_bias = rows % 2 == 1;
            SCOPED_TRACE(testing::Message()
                         << out << "x" << in << " thr " << thr << " outliers " << outliers
                         << " rows " << rows << " bias " << with_bias << " bnb " << bnb);
            auto w = random_int8(out, in, thr, 11).to(dev());
            w.bnb = bnb;
            auto xf = at::randn({rows, in});
            if (outliers) {
              xf.select(1, 3).select(0, rows - 1).fill_(9.5);
              xf.select(1, in - 2).select(0, 0).fill_(-7.0);
            }
            auto x = xf.to(dev(), GetParam().dtype);
            auto b = with_bias ? rnd({out}) : at::Tensor();
            auto y = ops::int8_linear(x, w, b);
            auto r = ops::ref::int8_linear(x, w, b);
            ASSERT_EQ(y.sizes(), r.sizes());
            EXPECT_EQ(y.scalar_type(), x.scalar_type());
            EXPECT_EQ(y.device(), x.device());
            EXPECT_LE(rel_diff(y, r), GetParam().tol);
            // the int8 matmul approximates the float one with the dequantized weight
            auto dense = at::linear(x.to(at::kFloat), ops::int8_dequantize(w, at::kFloat),
                                    b.defined() ? b.to(at::kFloat) : b);
            EXPECT_LE(rel_diff(y, dense), 3e-2);
          }
}

TEST_P(Int8Parity, DequantizeMatchesRef) {
  auto w = random_int8(37, 90, 6.0, 12);
  auto expect = ops::ref::int8_dequantize(w, at::kFloat);
  auto got = ops::int8_dequantize(w.to(dev()), GetParam().dtype);
  EXPECT_EQ(got.device(), dev());
  EXPECT_TRUE(at::equal(got.cpu(), expect.to(GetParam().dtype)));
  // w = q * scb / 127, element by element (on the CPU ops::int8_dequantize is the reference
  // itself: this loop is what it is checked against)
  auto loop = at::empty({37, 90}, at::kFloat);
  for (int64_t o = 0; o < 37; ++o)
    for (int64_t i = 0; i < 90; ++i)
      loop.data_ptr<float>()[o * 90 + i] = static_cast<float>(w.q.data_ptr<int8_t>()[o * 90 + i]) *
                                           w.scb.data_ptr<float>()[o] / 127.f;
  EXPECT_TRUE(at::equal(expect, loop));
}

// The two arithmetics differ where they should and nowhere else: an x exact in fp16 quantizes
// to the same int8 values either way (the outputs then differ by the scale constants alone,
// 1.8e-5 relative); an x that fp16 rounds moves some int8 values; the outlier columns multiply
// the original x in both.
TEST_P(Int8Parity, BnbArithmeticIsFp16Activations) {
  auto w = random_int8(64, 256, 6.0, 14).to(dev());
  auto w32 = w;
  w32.bnb = false;
  auto xh = at::randn({3, 256}).to(at::kHalf).to(at::kFloat);  // exact in fp16
  auto y = ops::int8_linear(xh.to(dev()), w, at::Tensor()).cpu().to(at::kDouble);
  auto y32 = ops::int8_linear(xh.to(dev()), w32, at::Tensor()).cpu().to(at::kDouble);
  const double k = static_cast<double>(6.200124e-05f) / static_cast<double>(1.f / (127.f * 127.f));
  EXPECT_LE(rel_diff(y, y32 * k), 5e-6);
  auto x = at::randn({3, 256}) * 2;
  x.select(1, 5).select(0, 1).fill_(9.123457f);  // an outlier column, not exact in fp16
  auto yb = ops::int8_linear(x.to(dev()), w, at::Tensor()).cpu();
  auto yf = ops::int8_linear(x.to(dev()), w32, at::Tensor()).cpu();
  EXPECT_GT(rel_diff(yb, yf), 1e-5);  // fp16 rounding moved some int8 values
  // the outlier column's contribution uses x, not its fp16 rounding: changing x there below fp16
  // resolution changes y exactly by that amount times the weight column
  auto x2 = x.clone();
  x2.select(1, 5).select(0, 1).fill_(9.123457f + 1e-3f);
  auto y2 = ops::int8_linear(x2.to(dev()), w, at::Tensor()).cpu();
  auto wcol = ops::ref::int8_dequantize(w.to(at::kCPU), at::kFloat).select(1, 5);
  EXPECT_LE((y2[1] - yb[1] - 1e-3f * wcol).abs().max().item<float>(), 1e-4);
}

// 3-d x, and a 3-d batch with a 3-d output
TEST_P(Int8Parity, ThreeDimX) {
  auto w = random_int8(48, 128, 6.0, 13).to(dev());
  auto x = rnd({2, 3, 128});
  auto y = ops::int8_linear(x, w, at::Tensor());
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 3, 48}));
  EXPECT_LE(rel_diff(y, ops::ref::int8_linear(x, w, at::Tensor())), GetParam().tol);
}

INSTANTIATE_TEST_SUITE_P(Int8, Int8Parity,
                         ::testing::Values(Case{"cpu", at::kFloat, 1e-5},
                                           Case{"cpu", at::kBFloat16, 2e-2},
                                           Case{"cuda", at::kFloat, 1e-5},
                                           Case{"cuda", at::kBFloat16, 3e-2},
                                           Case{"cuda", at::kHalf, 5e-3}),
                         case_name);

// The outlier decomposition changes the result (the planted column goes through fp32), and the
// ref's int8 part equals the exact integer product.
TEST(Int8Ops, OutliersTakeTheFloatPath) {
  auto w = random_int8(32, 64, 6.0, 14);
  auto w0 = w;
  w0.threshold = 0.0;
  auto x = at::randn({3, 64});
  x[1][10] = 40.0;
  auto y = ops::int8_linear(x, w, at::Tensor());
  auto y0 = ops::int8_linear(x, w0, at::Tensor());
  auto dense = at::linear(x, ops::int8_dequantize(w, at::kFloat));
  // without decomposition the 40 sets the row scale: the other columns lose most precision
  EXPECT_LT(rel_diff(y, dense), rel_diff(y0, dense) / 4);
  EXPECT_LE(rel_diff(y, ops::ref::int8_linear(x, w, at::Tensor())), 1e-5);
  EXPECT_LE(rel_diff(y0, ops::ref::int8_linear(x, w0, at::Tensor())), 1e-5);
  // all-zero rows
  auto z = at::zeros({2, 64});
  EXPECT_TRUE(at::equal(ops::int8_linear(z, w, at::Tensor()), at::zeros({2, 32})));
}

// Gradients flow to x and bias as through the dense (dequantized) weight; int8 keeps the int8
// forward value.
TEST(IntQOps, GradMatchesDenseLinear) {
  auto w = random_intq(24, 64, 4, 32, true, 15).t;
  auto dense = ops::ref::intq_dequantize(w, at::kFloat);
  auto i8 = random_int8(24, 64, 6.0, 16);
  auto dense8 = ops::ref::int8_dequantize(i8, at::kFloat);
  for (int64_t rows : {1, 5}) {
    auto x0 = at::randn({rows, 64}), b0 = at::randn({24}), g = at::randn({rows, 24});
    auto x1 = x0.clone().requires_grad_(), b1 = b0.clone().requires_grad_();
    auto x2 = x0.clone().requires_grad_(), b2 = b0.clone().requires_grad_();
    (ops::intq_linear(x1, w, b1) * g).sum().backward();
    (at::linear(x2, dense, b2) * g).sum().backward();
    EXPECT_LE(rel_diff(x1.grad(), x2.grad()), 1e-5);
    EXPECT_LE(rel_diff(b1.grad(), b2.grad()), 1e-5);

    auto x3 = x0.clone().requires_grad_(), x4 = x0.clone().requires_grad_();
    auto y3 = ops::int8_linear(x3, i8, at::Tensor());
    EXPECT_LE(rel_diff(y3.detach(), ops::ref::int8_linear(x0, i8, at::Tensor())), 1e-5);
    (y3 * g).sum().backward();
    (at::linear(x4, dense8) * g).sum().backward();
    EXPECT_LE(rel_diff(x3.grad(), x4.grad()), 1e-5);
  }
  at::NoGradGuard no_grad;
  EXPECT_FALSE(
      ops::intq_linear(at::randn({1, 64}).requires_grad_(), w, at::Tensor()).requires_grad());
}

TEST(IntQOps, TensorsToAndNbytes) {
  auto w = random_intq(37, 90, 4, 32, true, 17);
  const int64_t groups = 3;
  EXPECT_EQ(w.t.groups(), groups);
  EXPECT_EQ(w.t.nbytes(), 37 * 45 + 2 * 37 * groups * 4 + 90 * 8);
  auto c = w.t.to(at::kCPU);
  EXPECT_EQ(c.out, 37);
  EXPECT_EQ(c.in, 90);
  EXPECT_EQ(c.bits, 4);
  EXPECT_TRUE(at::equal(c.qweight, w.t.qweight));
  EXPECT_TRUE(at::equal(c.perm, w.t.perm));
  auto w8 = random_intq(5, 40, 8, 16, false, 18).t;
  EXPECT_EQ(w8.storage_bits(), 8);
  EXPECT_EQ(w8.nbytes(), 5 * 40 + 2 * 5 * 3 * 4);
  // 4-bit packing: element 2j in the low nibble
  const uint8_t q[4] = {1, 2, 3, 15};
  const float one = 1.f, zero = 0.f;
  auto p = ops::make_intq_tensors(q, &one, &zero, nullptr, 4, 4, 1, 4);
  EXPECT_EQ(p.qweight[0][0].item<uint8_t>(), 0x21);
  EXPECT_EQ(p.qweight[0][1].item<uint8_t>(), 0xF3);
  auto i8 = random_int8(6, 10, 6.0, 19);
  EXPECT_EQ(i8.nbytes(), 6 * 10 + 6 * 4);
  EXPECT_EQ(i8.to(at::kCPU).threshold, 6.0);
}

TEST(IntQOps, RejectsBadTensors) {
  auto w = random_intq(16, 64, 4, 32, false, 20).t;
  auto bad = w;
  bad.qweight = w.qweight.narrow(1, 0, 31);
  EXPECT_THROW(ops::intq_dequantize(bad, at::kFloat), Error);
  bad = w;
  bad.scales = w.scales.to(at::kHalf);
  EXPECT_THROW(ops::intq_linear(at::randn({1, 64}), bad, at::Tensor()), Error);
  bad = w;
  bad.perm = at::arange(63);
  EXPECT_THROW(ops::intq_linear(at::randn({1, 64}), bad, at::Tensor()), Error);
  EXPECT_THROW(ops::intq_linear(at::randn({1, 63}), w, at::Tensor()), Error);
  EXPECT_THROW(ops::intq_linear(at::randn({1, 64}), w, at::randn({15})), Error);
  const uint8_t q[2] = {0, 16};
  const float one = 1.f;
  EXPECT_THROW(ops::make_intq_tensors(q, &one, &one, nullptr, 4, 2, 1, 2), Error);
  const int64_t perm[2] = {0, 0};
  const uint8_t ok[2] = {0, 1};
  EXPECT_THROW(ops::make_intq_tensors(ok, &one, &one, perm, 4, 2, 1, 2), Error);
  auto i8 = random_int8(8, 16, 6.0, 21);
  auto bad8 = i8;
  bad8.scb = i8.scb.narrow(0, 0, 7);
  EXPECT_THROW(ops::int8_linear(at::randn({1, 16}), bad8, at::Tensor()), Error);
  EXPECT_THROW(ops::int8_linear(at::randn({1, 15}), i8, at::Tensor()), Error);
}

}  // namespace
