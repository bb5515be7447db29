// GPTQ v1 / AWQ GEMM int32 packing and the fp16 helpers: words worked out by hand from the
// published layouts (AutoGPTQ QuantLinear.pack, AutoAWQ WQLinear_GEMM.from_linear, GPTQModel's
// v1 <-> v2 qzeros conversion), round trips, and bad inputs as clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "quant/intq.h"
#include "quant/intq_pack.h"

namespace {

using namespace sllm::quant;

int32_t i32(uint32_t w) { return static_cast<int32_t>(w); }

template <typename F>
void expect_error(F&& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error (expected one mentioning '" << part << "')";
  } catch (const sllm::Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(IntqPack, Fp16KnownValues) {
  EXPECT_EQ(fp32_to_fp16_bits(1.0f), 0x3C00);
  EXPECT_EQ(fp32_to_fp16_bits(-2.0f), 0xC000);
  EXPECT_EQ(fp32_to_fp16_bits(0.1f), 0x2E66);
  EXPECT_EQ(fp32_to_fp16_bits(65504.0f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16_bits(65519.0f), 0x7BFF);
  EXPECT_EQ(fp32_to_fp16_bits(65520.0f), 0x7C00);  // the tie above the largest half: to inf
  EXPECT_EQ(fp32_to_fp16_bits(-INFINITY), 0xFC00);
  EXPECT_EQ(fp32_to_fp16_bits(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16_bits(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(fp32_to_fp16_bits(std::ldexp(1.0f, -14)), 0x0400);
  // Ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10.
  EXPECT_EQ(fp32_to_fp16_bits(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(fp32_to_fp16_bits(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(fp32_to_fp16_bits(std::ldexp(1.0f, -25)), 0x0000);      // subnormal tie -> 0
  EXPECT_EQ(fp32_to_fp16_bits(3 * std::ldexp(1.0f, -25)), 0x0002);  // 1.5 ulp -> 2
  EXPECT_TRUE(std::isnan(fp16_bits_to_fp32(fp32_to_fp16_bits(NAN))));
  EXPECT_EQ(fp16_bits_to_fp32(0x3555), 0.333251953125f);
  EXPECT_EQ(fp16_bits_to_fp32(0x0001), std::ldexp(1.0f, -24));
}

TEST(IntqPack, Fp16RoundTripsEveryHalfAndAgreesWithRoundToFp16) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = fp16_bits_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(fp32_to_fp16_bits(f), h) << std::hex << h;
  }
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> e(-30.0f, 17.0f), m(1.0f, 2.0f);
  for (int k = 0; k < 100000; ++k) {
    const float x = (k % 2 ? -1.0f : 1.0f) * m(rng) * std::exp2(e(rng));
    ASSERT_EQ(fp16_bits_to_fp32(fp32_to_fp16_bits(x)), round_to_fp16(x)) << x;
  }
}

TEST(IntqPack, GptqQweightKnownWords) {
  // 4 bits: input row i of a column sits at bit 4 * (i % 8) of word i / 8.
  std::vector<uint8_t> q = {1,  2, 3, 4, 5, 6, 7, 8,   // output row 0
                            15, 0, 0, 0, 0, 0, 0, 9};  // output row 1
  auto w = gptq_pack_qweight(q.data(), 2, 8, 4);
  ASSERT_EQ(w.size(), 2u);  // [in * 4 / 32, out] = [1, 2]
  EXPECT_EQ(w[0], i32(0x87654321u));
  EXPECT_EQ(w[1], i32(0x9000000Fu));
  EXPECT_EQ(gptq_unpack_qweight(w.data(), 2, 8, 4), q);

  // 16 input rows -> 2 packed rows; word (1, 0) holds rows 8..15.
  std::vector<uint8_t> q16(16);
  for (int i = 0; i < 16; ++i) q16[i] = static_cast<uint8_t>(i == 8 ? 0xA : 0);
  w = gptq_pack_qweight(q16.data(), 1, 16, 4);
  EXPECT_EQ(w, (std::vector<int32_t>{0, 0xA}));

  // 2 bits: 16 rows per word at bit 2 * (i % 16).
  std::vector<uint8_t> q2(16);
  for (int i = 0; i < 16; ++i) q2[i] = static_cast<uint8_t>(i % 4);
  w = gptq_pack_qweight(q2.data(), 1, 16, 2);
  EXPECT_EQ(w, (std::vector<int32_t>{i32(0xE4E4E4E4u)}));
  EXPECT_EQ(gptq_unpack_qweight(w.data(), 1, 16, 2), q2);

  // 8 bits: 4 rows per word, first row in the low byte.
  std::vector<uint8_t> q8 = {0x11, 0x22, 0x33, 0xFF};
  w = gptq_pack_qweight(q8.data(), 1, 4, 8);
  EXPECT_EQ(w, (std::vector<int32_t>{i32(0xFF332211u)}));
  EXPECT_EQ(gptq_unpack_qweight(w.data(), 1, 4, 8), q8);
}

TEST(IntqPack, GptqQzerosStoreZeroMinusOne) {
  // zeros [out = 8, groups = 1]: output column o in field o of the word, holding zero - 1.
  std::vector<float> sym(8, 8.0f);
  EXPECT_EQ(gptq_pack_qzeros(sym.data(), 8, 1, 4), (std::vector<int32_t>{0x77777777}));
  std::vector<float> z = {1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(gptq_pack_qzeros(z.data(), 8, 1, 4), (std::vector<int32_t>{0x76543210}));
  EXPECT_EQ(gptq_unpack_qzeros(std::vector<int32_t>{0x76543210}.data(), 8, 1, 4), z);
  // v2 stores the zeros themselves.
  EXPECT_EQ(gptq_pack_qzeros(z.data(), 8, 1, 4, /*v1=*/false),
            (std::vector<int32_t>{i32(0x87654321u)}));
  // A zero of 0 borrows from the next field (whole-word subtraction, as GPTQModel does):
  // 0x11111110 - 0x11111111 = 0xFFFFFFFF, and unpacking adds the ones back.
  std::vector<float> z0 = {0, 1, 1, 1, 1, 1, 1, 1};
  auto w = gptq_pack_qzeros(z0.data(), 8, 1, 4);
  EXPECT_EQ(w, (std::vector<int32_t>{-1}));
  EXPECT_EQ(gptq_unpack_qzeros(w.data(), 8, 1, 4), z0);
  std::vector<float> z15 = {15, 0, 15, 0, 0, 15, 0, 0};
  EXPECT_EQ(gptq_unpack_qzeros(gptq_pack_qzeros(z15.data(), 8, 1, 4).data(), 8, 1, 4), z15);
  // 8 and 2 bits: symmetric zeros 128 / 2.
  std::vector<float> s8(4, 128.0f), s2(16, 2.0f);
  EXPECT_EQ(gptq_pack_qzeros(s8.data(), 4, 1, 8), (std::vector<int32_t>{0x7F7F7F7F}));
  EXPECT_EQ(gptq_pack_qzeros(s2.data(), 16, 1, 2), (std::vector<int32_t>{0x55555555}));
  // [out, groups] in, [groups, out * bits / 32] out: group g is row g.
  std::vector<float> zg(16);  // out 8, groups 2
  for (int o = 0; o < 8; ++o) {
    zg[o * 2] = 1;
    zg[o * 2 + 1] = static_cast<float>(o + 1);
  }
  EXPECT_EQ(gptq_pack_qzeros(zg.data(), 8, 2, 4), (std::vector<int32_t>{0, 0x76543210}));
}

TEST(IntqPack, AwqInterleavedOrder) {
  // One input row, 8 output columns with value = column: nibble p holds column 0 2 4 6 1 3 5 7.
  std::vector<uint8_t> q = {0, 1, 2, 3, 4, 5, 6, 7};
  auto w = awq_pack_qweight(q.data(), 8, 1);
  EXPECT_EQ(w, (std::vector<int32_t>{0x75316420}));
  EXPECT_EQ(awq_unpack_qweight(w.data(), 8, 1), q);
  // Two input rows, 16 columns: [in, out / 8] row-major; column 9 of row 1 -> word (1, 1),
  // nibble 4.
  std::vector<uint8_t> q2(32, 0);
  q2[9 * 2 + 1] = 0xB;
  w = awq_pack_qweight(q2.data(), 16, 2);
  EXPECT_EQ(w, (std::vector<int32_t>{0, 0, 0, 0x000B0000}));
  EXPECT_EQ(awq_unpack_qweight(w.data(), 16, 2), q2);
  // qzeros: the same order, no off-by-one.
  std::vector<float> z = {0, 1, 2, 3, 4, 5, 6, 7};
  EXPECT_EQ(awq_pack_qzeros(z.data(), 8, 1), (std::vector<int32_t>{0x75316420}));
  EXPECT_EQ(awq_unpack_qzeros(std::vector<int32_t>{0x75316420}.data(), 8, 1), z);
  for (int p = 0; p < 8; ++p) EXPECT_EQ(kAwqNibbleOf[kAwqOrder[p]], p);
}

TEST(IntqPack, RandomRoundTrips) {
  std::mt19937 rng(11);
  for (int bits : {2, 4, 8}) {
    const int64_t out = 48, in = 64, groups = 4;
    std::vector<uint8_t> q(out * in);
    std::vector<float> z(out * groups);
    for (auto& v : q) v = static_cast<uint8_t>(rng() % (1u << bits));
    for (auto& v : z) v = static_cast<float>(rng() % (1u << bits));
    auto qw = gptq_pack_qweight(q.data(), out, in, bits);
    EXPECT_EQ(qw.size(), static_cast<size_t>(in * bits / 32 * out));
    EXPECT_EQ(gptq_unpack_qweight(qw.data(), out, in, bits), q) << bits;
    for (bool v1 : {true, false}) {
      auto qz = gptq_pack_qzeros(z.data(), out, groups, bits, v1);
      EXPECT_EQ(qz.size(), static_cast<size_t>(groups * out * bits / 32));
      EXPECT_EQ(gptq_unpack_qzeros(qz.data(), out, groups, bits, v1), z) << bits;
    }
    if (bits == 4) {
      auto aw = awq_pack_qweight(q.data(), out, in);
      EXPECT_EQ(aw.size(), static_cast<size_t>(in * out / 8));
      EXPECT_EQ(awq_unpack_qweight(aw.data(), out, in), q);
      EXPECT_EQ(awq_unpack_qzeros(awq_pack_qzeros(z.data(), out, groups).data(), out, groups), z);
    }
  }
  std::vector<float> s = {1.0f, 0.5f, -0.25f, 0.0009765625f, 3.0f, 65504.0f};  // out 3, groups 2
  auto h = pack_scales_fp16(s.data(), 3, 2);
  EXPECT_EQ(h, (std::vector<uint16_t>{0x3C00, 0xB400, 0x4200, 0x3800, 0x1400, 0x7BFF}));
  EXPECT_EQ(unpack_scales_fp16(h.data(), 3, 2), s);
}

TEST(IntqPack, BadInputsAreClearErrors) {
  std::vector<uint8_t> q(64, 1);
  std::vector<float> z(64, 1.0f);
  expect_error([&] { gptq_pack_qweight(q.data(), 8, 8, 3); }, "3-bit");
  expect_error([&] { gptq_unpack_qweight(nullptr, 8, 8, 3); }, "3-bit");
  expect_error([&] { gptq_pack_qzeros(z.data(), 8, 8, 3); }, "3-bit");
  expect_error([&] { gptq_pack_qweight(q.data(), 8, 8, 5); }, "2, 4 or 8 bits");
  expect_error([&] { gptq_pack_qweight(q.data(), 16, 4, 4); }, "in_features divisible by 8");
  expect_error([&] { gptq_pack_qzeros(z.data(), 4, 16, 4); }, "out_features divisible by 8");
  expect_error([&] { awq_pack_qweight(q.data(), 4, 16); }, "divisible by 8");
  expect_error([&] { awq_unpack_qzeros(nullptr, 12, 1); }, "divisible by 8");
  q[9] = 16;
  expect_error([&] { gptq_pack_qweight(q.data(), 8, 8, 4); }, "value 16 at [1, 1]");
  expect_error([&] { awq_pack_qweight(q.data(), 8, 8); }, "does not fit in 4 bits");
  z[3] = 2.5f;
  expect_error([&] { gptq_pack_qzeros(z.data(), 8, 8, 4); }, "zero point 2.5 at [0, 3]");
  z[3] = 16.0f;
  expect_error([&] { awq_pack_qzeros(z.data(), 8, 8); }, "[0, 15]");
  std::vector<float> s = {0.1f};
  expect_error([&] { pack_scales_fp16(s.data(), 1, 1); }, "not an fp16 value");
  s[0] = INFINITY;
  expect_error([&] { pack_scales_fp16(s.data(), 1, 1); }, "not an fp16 value");
  expect_error([&] { gptq_pack_qweight(q.data(), 0, 8, 4); }, "invalid weight shape");
}

}  // namespace
