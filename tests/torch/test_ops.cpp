// Every fused op against its plain-libtorch reference, over the {cpu, cuda} x {fp32, bf16, fp16}
// cases on which it runs a kernel. CUDA cases skip on machines without a GPU.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "engine/sampler.h"
#include "model/llama.h"
#include "ops/cuda_plugin.h"
#include "ops/impl.h"
#include "ops/ops.h"
#include "sllm/error.h"

using namespace sllm;

namespace {

struct OpCase {
  const char* device;
  at::ScalarType dtype;
  double tol;
};

class OpsParity : public ::testing::TestWithParam<OpCase> {
 protected:
  void SetUp() override {
    if (std::string(GetParam().device) == "cuda" && !sllm::ops::cuda_available())
      GTEST_SKIP() << "no CUDA GPU";
    at::manual_seed(0);
  }
  at::Tensor rnd(std::vector<int64_t> s) {
    return at::randn(s).to(at::Device(GetParam().device), GetParam().dtype);
  }
  // |a - b| <= tol + one unit in the last place of the dtype at |b|: a kernel and the
  // reference may round one output differently, and bf16's ulp at |x| in [8, 16) is 0.0625.
  void expect_close(const at::Tensor& a, const at::Tensor& b) {
    const auto dtype = GetParam().dtype;
    const double ulp = dtype == at::kBFloat16 ? 1.0 / 128 : dtype == at::kHalf ? 1.0 / 1024 : 0.0;
    const auto af = a.to(at::kFloat), bf = b.to(at::kFloat);
    const auto excess = (af - bf).abs() - (GetParam().tol + ulp * bf.abs());
    const double worst = excess.max().item<double>();
    EXPECT_LE(worst, 0.0) << "max abs diff " << (af - bf).abs().max().item<double>()
                          << " exceeds tol " << GetParam().tol << " + 1 ulp of |ref|";
  }
};

// Each op's cases are the (device, dtype) pairs on which it runs a kernel of ours; a pair that
// runs ops::ref (the CPU silu_mul is ATen's silu, there is no CUDA rope) has nothing to compare,
// and a case that quietly falls back to ops::ref fails here instead of comparing ref with itself.
#define EXPECT_KERNEL(impl)                                                                   \
  ASSERT_NE(impl, ops::Impl::reference) << #impl << " runs ops::ref on " << GetParam().device \
                                        << " " << c10::toString(GetParam().dtype)             \
                                        << ": the parity check would compare ops::ref with "  \
                                           "itself"

class RmsNormParity : public OpsParity {};
class RopeParity : public OpsParity {};
class SiluMulParity : public OpsParity {};

TEST_P(RmsNormParity, MatchesRef) {
  auto x = rnd({7, 3, 576}), w = rnd({576});
  EXPECT_KERNEL(ops::rms_norm_impl(x, w));
  expect_close(ops::rms_norm(x, w, 1e-5), ops::ref::rms_norm(x, w, 1e-5));
}

TEST_P(RopeParity, MatchesRef) {
  auto x = rnd({5, 9, 64});
  auto pos = at::arange(5, at::kFloat).unsqueeze(1) * at::rand({32});
  auto cos = pos.cos().to(x.device()), sin = pos.sin().to(x.device());
  EXPECT_KERNEL(ops::rope_impl(x, cos, sin));
  expect_close(ops::rope(x, cos, sin), ops::ref::rope(x, cos, sin));
  // a strided x (a slice of a fused q|k|v row) is copied, not written through
  auto qkv = rnd({5, 12, 64});
  auto xs = qkv.narrow(1, 2, 9);
  auto before = qkv.clone();
  EXPECT_KERNEL(ops::rope_impl(xs, cos, sin));
  expect_close(ops::rope(xs, cos, sin), ops::ref::rope(xs, cos, sin));
  EXPECT_TRUE(at::equal(qkv, before));
}

TEST_P(SiluMulParity, MatchesRef) {
  auto gu = rnd({6, 2 * 1536});
  EXPECT_KERNEL(ops::silu_mul_impl(gu));
  expect_close(ops::silu_mul(gu), ops::ref::silu_mul(gu));
}

std::string case_name(const ::testing::TestParamInfo<OpCase>& info) {
  return std::string(info.param.device) + "_" + std::string(c10::toString(info.param.dtype));
}
const OpCase kCpuF32{"cpu", at::kFloat, 1e-5}, kCpuBf16{"cpu", at::kBFloat16, 2e-2},
    kCudaF32{"cuda", at::kFloat, 1e-5}, kCudaBf16{"cuda", at::kBFloat16, 3e-2},
    kCudaF16{"cuda", at::kHalf, 5e-3};

INSTANTIATE_TEST_SUITE_P(Ops, RmsNormParity,
                         ::testing::Values(kCpuF32, kCpuBf16, kCudaF32, kCudaBf16, kCudaF16),
                         case_name);
INSTANTIATE_TEST_SUITE_P(Ops, RopeParity, ::testing::Values(kCpuF32, kCpuBf16), case_name);
INSTANTIATE_TEST_SUITE_P(Ops, SiluMulParity, ::testing::Values(kCudaF32, kCudaBf16, kCudaF16),
                         case_name);

// The dispatch query answers for other inputs as the ops run them: autograd on the CPU takes the
// fused autograd functions, and dtypes without a CPU kernel the reference.
TEST(OpsImpl, ReportsTheDispatch) {
  auto x = at::randn({4, 64}), w = at::randn({64});
  EXPECT_EQ(ops::rms_norm_impl(x, w), ops::Impl::cpu_kernel);
  EXPECT_EQ(ops::rms_norm_impl(x.to(at::kHalf), w.to(at::kHalf)), ops::Impl::reference);
  EXPECT_EQ(ops::rms_norm_impl(x.to(at::kBFloat16), w), ops::Impl::reference);
  auto xg = x.clone().requires_grad_();
  EXPECT_EQ(ops::rms_norm_impl(xg, w), ops::Impl::fused_autograd);
  EXPECT_EQ(ops::silu_mul_impl(x), ops::Impl::reference);
  EXPECT_EQ(ops::silu_mul_impl(xg), ops::Impl::fused_autograd);
  EXPECT_STREQ(ops::impl_name(ops::Impl::reference), "ops::ref");
}

TEST(OpsRope, Llama3ScalingKeepsHighFrequencies) {
  model::ModelConfig c;
  c.head_dim = 64;
  c.rope_theta = 500000;
  auto plain = model::rope_inv_freq(c);
  c.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 8192};
  auto scaled = model::rope_inv_freq(c);
  EXPECT_FLOAT_EQ(scaled[0].item<float>(), plain[0].item<float>());  // short wavelength kept
  EXPECT_NEAR(scaled[31].item<float>(), plain[31].item<float>() / 8, 1e-12);  // long one divided
  c.rope_scaling = {"linear", 2.0, 1.0, 4.0, 8192};
  EXPECT_TRUE(at::allclose(model::rope_inv_freq(c), plain / 2));
}

TEST(Sampler, GreedyAndTopK1AreArgmax) {
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.9f};
  engine::SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(engine::Sampler(p).sample(logits.data(), 4, {}), 1);
  p.temperature = 1.0;
  p.top_k = 1;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    p.seed = seed;
    auto l = logits;
    EXPECT_EQ(engine::Sampler(p).sample(l.data(), 4, {}), 1);
  }
}

TEST(Sampler, TopPMinPRestrictSupportAndSeedRepeats) {
  std::vector<float> base = {3.0f, 2.9f, 0.0f, -1.0f, -2.0f};
  engine::SamplingParams p;
  p.temperature = 1.0;
  p.top_p = 0.8;  // the two leading tokens hold ~0.86 of the mass
  engine::Sampler s(p), s2(p);
  for (int i = 0; i < 200; ++i) {
    auto l = base, l2 = base;
    const int32_t t = s.sample(l.data(), 5, {});
    EXPECT_TRUE(t == 0 || t == 1);
    EXPECT_EQ(t, s2.sample(l2.data(), 5, {}));  // same seed, same draws
  }
  p.top_p = 1.0;
  p.min_p = 0.5;  // keeps tokens with p >= 0.5 * p_max: tokens 0 and 1
  engine::Sampler m(p);
  for (int i = 0; i < 200; ++i) {
    auto l = base;
    const int32_t t = m.sample(l.data(), 5, {});
    EXPECT_TRUE(t == 0 || t == 1);
  }
}

TEST(Sampler, PresenceAndFrequencyPenaltiesCountGeneratedTokensOnly) {
  engine::SamplingParams p;
  p.temperature = 0;
  p.presence_penalty = 0.5;
  p.frequency_penalty = 0.25;
  engine::Sampler s(p);
  // First call: the history is the prompt, which is never penalised.
  std::vector<float> first = {2.0f, 1.0f, 0.0f};
  EXPECT_EQ(s.sample(first.data(), 3, {0, 0}), 0);
  EXPECT_FLOAT_EQ(first[0], 2.0f);
  // Generated so far: 0 once, 1 twice -> 0: 2.0 - 0.25 - 0.5, 1: 1.9 - 0.5 - 0.5.
  std::vector<float> next = {2.0f, 1.9f, 0.8f};
  EXPECT_EQ(s.sample(next.data(), 3, {0, 0, 0, 1, 1}), 0);
  EXPECT_FLOAT_EQ(next[0], 1.25f);
  EXPECT_FLOAT_EQ(next[1], 0.9f);
  EXPECT_FLOAT_EQ(next[2], 0.8f);
  engine::SamplingParams bad = p;
  bad.presence_penalty = 2.5;
  EXPECT_THROW(bad.validate(), sllm::Error);
}

TEST(Sampler, RepetitionPenaltyAsTransformers) {
  std::vector<float> logits = {2.0f, 1.8f, -1.0f};
  engine::SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 1.5;  // 2.0 -> 1.333 (seen), so 1.8 wins
  EXPECT_EQ(engine::Sampler(p).sample(logits.data(), 3, {0, 0, 2}), 1);
  EXPECT_FLOAT_EQ(logits[2], -1.5f);  // negative logits are multiplied
}

}  // namespace

// The bench's CUDA memory columns: the caching allocator's peaks cover a tensor just allocated,
// and reserved (what the allocator took from the driver) is at least allocated.
TEST(OpsCuda, cuda_PeakMemoryCoversAnAllocation) {
  if (!sllm::ops::cuda_available()) GTEST_SKIP() << "no CUDA device";
  const auto before = sllm::ops::cuda_peak_memory(0);
  auto t = at::empty({64, 1024, 1024}, at::TensorOptions().device(at::kCUDA, 0));  // 256 MiB
  const auto after = sllm::ops::cuda_peak_memory(0);
  EXPECT_GE(after.allocated, before.allocated);
  EXPECT_GE(after.allocated, static_cast<uint64_t>(t.nbytes()));
  EXPECT_GE(after.reserved, after.allocated);
}
