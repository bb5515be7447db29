// Round-to-nearest group quantization and LLM.int8() weight quantization (quant/intq.h).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "quant/intq.h"

namespace sllm::quant {
namespace {

std::vector<float> random_weights(int64_t n, uint32_t seed, float scale = 0.05f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> w(n);
  for (auto& x : w) x = d(rng);
  return w;
}

TEST(IntQ, RoundToFp16) {
  EXPECT_EQ(round_to_fp16(1.0f), 1.0f);
  EXPECT_EQ(round_to_fp16(0.0f), 0.0f);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to even (1.0).
  EXPECT_EQ(round_to_fp16(1.0f + std::ldexp(1.0f, -11)), 1.0f);
  EXPECT_EQ(round_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 1.0f + std::ldexp(1.0f, -9));
  EXPECT_EQ(round_to_fp16(0.1f), 0.0999755859375f);  // fp16(0.1) = 1638 * 2^-14
  EXPECT_EQ(round_to_fp16(-0.1f), -0.0999755859375f);
  EXPECT_EQ(round_to_fp16(3e-8f), std::ldexp(1.0f, -24));  // rounds to the smallest subnormal
  EXPECT_EQ(round_to_fp16(65504.0f), 65504.0f);
  EXPECT_TRUE(std::isinf(round_to_fp16(70000.0f)));
}

TEST(IntQ, RtnAsymmetricGroup) {
  // One group of 4: min -1, max 2 -> scale 3/15 = 0.2, zero round(1/0.2) = 5.
  const float w[4] = {-1.0f, 0.0f, 0.5f, 2.0f};
  RtnOptions o;
  o.bits = 4;
  o.group_size = 4;
  o.sym = false;
  auto q = quantize_rtn(w, 1, 4, o);
  ASSERT_EQ(q.scales.size(), 1u);
  EXPECT_EQ(q.scales[0], round_to_fp16(0.2f));
  EXPECT_EQ(q.zeros[0], 5.0f);
  // 0.5 / fp16(0.2) = 2.5006 (the fp16 scale is a little below 0.2): rounds up to 3.
  EXPECT_EQ(q.q, (std::vector<uint8_t>{0, 5, 8, 15}));
}

TEST(IntQ, RtnSymmetricUsesMidpointZero) {
  const float w[4] = {-1.5f, 0.25f, 0.5f, 0.75f};
  RtnOptions o;
  o.bits = 4;
  o.group_size = 4;
  o.sym = true;
  auto q = quantize_rtn(w, 1, 4, o);
  EXPECT_EQ(q.zeros[0], 8.0f);
  EXPECT_EQ(q.scales[0], round_to_fp16(3.0f / 15.0f));  // 2 * absmax / 15
  EXPECT_EQ(q.q[0], 8 - 8);  // -1.5 / 0.2 = -7.5 -> -8 (ties to even) + 8 = 0
}

TEST(IntQ, RtnErrorIsBoundedByHalfAStep) {
  const int64_t out = 16, in = 256;
  auto w = random_weights(out * in, 7);
  for (bool sym : {false, true})
    for (int bits : {2, 4, 8})
      for (int64_t gs : {32, 128, -1}) {
        RtnOptions o;
        o.bits = bits;
        o.group_size = gs;
        o.sym = sym;
        auto q = quantize_rtn(w.data(), out, in, o);
        EXPECT_EQ(q.group_size, gs > 0 ? gs : in);
        std::vector<float> d(out * in);
        dequantize(q, d.data());
        for (int64_t o2 = 0; o2 < out; ++o2)  // (covers group 128 over 256 and per-channel)
          for (int64_t i = 0; i < in; ++i) {
            const float s = q.scales[o2 * q.groups() + i / q.group_size];
            // Half a step, plus the drift of the fp16-rounded scale over the code range.
            const float bound = s * (0.5f + ((1 << bits) - 1) / 2048.0f) + 1e-7f;
            ASSERT_LE(std::fabs(d[o2 * in + i] - w[o2 * in + i]), bound)
                << "bits " << bits << " group " << gs << " sym " << sym;
          }
      }
}

TEST(IntQ, RtnPartialLastGroup) {
  // 576 = 4 x 128 + 64 (SmolLM2-135M's hidden size): five groups, the last of 64 columns,
  // quantized on its own range as GPTQ's g_idx = i / 128 implies.
  auto w = random_weights(2 * 576, 3);
  for (int64_t i = 512; i < 576; ++i) w[i] *= 10;  // the partial group of row 0 is 10x wider
  RtnOptions o;
  o.group_size = 128;
  auto q = quantize_rtn(w.data(), 2, 576, o);
  ASSERT_EQ(q.groups(), 5);
  ASSERT_EQ(q.scales.size(), 10u);
  EXPECT_GT(q.scales[4], 5 * q.scales[3]);
  EXPECT_EQ(q.group_of(575), 4);
  std::vector<float> d(2 * 576);
  dequantize(q, d.data());
  for (int64_t i = 512; i < 576; ++i) EXPECT_LE(std::fabs(d[i] - w[i]), 0.51f * q.scales[4]);
}

TEST(IntQ, ZeroGroupDequantizesToZero) {
  std::vector<float> w(128, 0.0f);
  for (bool sym : {false, true}) {
    RtnOptions o;
    o.sym = sym;
    auto q = quantize_rtn(w.data(), 1, 128, o);
    std::vector<float> d(128, 1.0f);
    dequantize(q, d.data());
    for (float x : d) EXPECT_EQ(x, 0.0f);
  }
}

TEST(IntQ, GroupIndexMapsColumns) {
  IntQWeight q;
  q.bits = 4;
  q.group_size = 2;
  q.out = 1;
  q.in = 4;
  q.q = {1, 2, 3, 4};
  q.scales = {1.0f, 10.0f};
  q.zeros = {0.0f, 1.0f};
  q.g_idx = {1, 0, 0, 1};  // act-order: columns 0 and 3 share group 1
  std::vector<float> d(4);
  dequantize(q, d.data());
  EXPECT_EQ(d, (std::vector<float>{0.0f, 2.0f, 3.0f, 30.0f}));
}

TEST(IntQ, Int8RowAbsmax) {
  const float w[6] = {1.0f, -0.5f, 0.25f, 0.0f, 2.0f, -4.0f};
  auto q = quantize_int8(w, 2, 3);
  EXPECT_EQ(q.scb, (std::vector<float>{1.0f, 4.0f}));
  EXPECT_EQ(q.q, (std::vector<int8_t>{127, -64, 32, 0, 64, -127}));  // -63.5 -> -64 (even)
  // Rows are rounded to fp16 first, as bitsandbytes quantizes an fp16 copy of the weight.
  const float w2[2] = {1.0f, 1.0f / 3.0f};
  auto q2 = quantize_int8(w2, 1, 2);
  EXPECT_EQ(q2.q[1], static_cast<int8_t>(std::nearbyint(round_to_fp16(1.0f / 3.0f) * 127.0f)));
  std::vector<float> d(6);
  dequantize(q, d.data());
  EXPECT_FLOAT_EQ(d[0], 1.0f);
  EXPECT_FLOAT_EQ(d[5], -4.0f);
}

}  // namespace
}  // namespace sllm::quant
