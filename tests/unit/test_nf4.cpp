// NF4 / FP4 quantization: bit-exactness with bitsandbytes 0.50.2 (CPU path) and round-trip bounds.
// Reference values below came from tests/reference/nf4_reference.py running REAL bitsandbytes:
//   .venv/bin/pip install --no-deps --target /tmp/bnb bitsandbytes==0.50.2
//   PYTHONPATH=/tmp/bnb .venv/bin/python tests/reference/nf4_reference.py --input formula
//       --n 301 --blocksize 64 --quant-type nf4 --double-quant      (fixture A, one command)
//   ... --n 301 --blocksize 128 --quant-type fp4                    (fixture B)
//   ... --n 19200 --blocksize 64 --quant-type nf4 --double-quant    (fixture C)
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/nf4.h"
#include "quant/nf4.h"

namespace {

using sllm::quant::Nf4Options;
using sllm::quant::Nf4Weight;
namespace k = sllm::kernels::cpu;

// Same as formula_input() in nf4_reference.py; every step is one IEEE fp32 operation.
std::vector<float> formula_input(int64_t n, int64_t blocksize) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>((i * 37 + 11) % 101 - 50) / 50.0f;
    x[i] = v * static_cast<float>(1 + (i / blocksize) % 4);
  }
  return x;
}

std::string hex(const std::vector<uint8_t>& b) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t v : b) {
    s += d[v >> 4];
    s += d[v & 15];
  }
  return s;
}

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

uint64_t fnv1a64(const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

Nf4Weight quantize(const std::vector<float>& x, int64_t blocksize, const char* type, bool dq) {
  Nf4Options o;
  o.blocksize = blocksize;
  o.quant_type = type;
  o.double_quant = dq;
  return sllm::quant::quantize_nf4(x.data(), {static_cast<int64_t>(x.size())}, o);
}

std::vector<float> dequant(const Nf4Weight& q) {
  std::vector<float> out(static_cast<size_t>(q.numel()));
  sllm::quant::dequantize(q, out.data());
  return out;
}

TEST(Nf4Table, MatchesBitsandbytesPublishedValues) {
  // bitsandbytes functional.get_4bit_type("nf4").
  const double expected[16] = {-1.0,
                               -0.6961928009986877,
                               -0.5250730514526367,
                               -0.39491748809814453,
                               -0.28444138169288635,
                               -0.18477343022823334,
                               -0.09105003625154495,
                               0.0,
                               0.07958029955625534,
                               0.16093020141124725,
                               0.24611230194568634,
                               0.33791524171829224,
                               0.44070982933044434,
                               0.5626170039176941,
                               0.7229568362236023,
                               1.0};
  const float* nf4 = k::quant4_code(k::Quant4Type::kNf4);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(nf4[i], static_cast<float>(expected[i])) << i;
  // FP4: {0, .0625, 8, 12, 4, 6, 2, 3} / 12 with the sign in bit 3.
  const float* fp4 = k::quant4_code(k::Quant4Type::kFp4);
  const float raw[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(fp4[i], raw[i] / 12.0f) << i;
    EXPECT_EQ(fp4[i + 8], -raw[i] / 12.0f) << i;
  }
}

TEST(Nf4Table, DynamicMapMatchesBitsandbytes) {
  std::vector<float> m(k::bnb_dynamic_map(), k::bnb_dynamic_map() + 256);
  std::vector<float> gen(256);
  k::create_dynamic_map(gen.data());
  for (int i = 0; i < 256; ++i)
    EXPECT_LE(std::fabs(gen[i] - m[i]), std::fabs(m[i]) * 2.5e-7f) << i;  // <= 2 ulp
  // Fixture A's nested_quant_map (bnb create_dynamic_map(signed=True)).
  EXPECT_EQ(bits(m[0]), 0xbf7e3333u);
  EXPECT_EQ(bits(m[127]), 0x00000000u);
  EXPECT_EQ(bits(m[128]), 0x3513a3b7u);
  EXPECT_EQ(bits(m[255]), 0x3f800000u);
  EXPECT_EQ(fnv1a64(m.data(), m.size() * 4), 0xd677f22a96665bc4ull);
}

TEST(Nf4Pack, HighNibbleFirstAndOddTail) {
  // NF4: 1 -> 15, -1 -> 0, 0 -> 7, 0.5 -> 12 (below the 0.4407/0.5626 midpoint), pad -> code of 0.
  const std::vector<float> x = {1.0f, -1.0f, 0.0f, 0.5f, -0.5f};
  Nf4Weight q = quantize(x, 64, "nf4", false);
  ASSERT_EQ(q.weight.size(), 3u);
  EXPECT_EQ(q.weight[0], 0xF0);
  EXPECT_EQ(q.weight[1], 0x7C);
  EXPECT_EQ(q.weight[2], 0x27);  // -0.5 -> 2 (-0.5251), padding -> 7
  ASSERT_EQ(q.absmax.size(), 1u);
  EXPECT_EQ(q.absmax[0], 1.0f);
  // FP4: 1 -> 3, -1 -> 11, 0 -> 0, 0.5 -> 5, -0.5 -> 13, pad -> 0; tiny positives -> 8 (-0), as
  // bnb.
  Nf4Weight f = quantize({1.0f, -1.0f, 0.0f, 0.5f, -0.5f, 0.001f}, 64, "fp4", false);
  EXPECT_EQ(hex(f.weight), "3b05d8");
  Nf4Weight g = quantize({1.0f, -1.0f, 0.0f}, 64, "fp4", false);
  EXPECT_EQ(hex(g.weight), "3b00");
}

TEST(Nf4Pack, TiesGoToTheLowerCode) {
  const float* c = k::quant4_code(k::Quant4Type::kNf4);
  const float mid = (c[14] + c[15]) / 2.0f;
  Nf4Weight q = quantize({1.0f, mid, std::nextafter(mid, 2.0f), 0.0f}, 64, "nf4", false);
  EXPECT_EQ(hex(q.weight), "fef7");
}

TEST(Nf4RoundTrip, ErrorWithinHalfTheLargestGap) {
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = std::sin(0.37f * static_cast<float>(i)) * (1.0f + i % 13);
  for (const char* type : {"nf4", "fp4"}) {
    for (bool dq : {false, true}) {
      Nf4Weight q = quantize(x, 64, type, dq);
      const std::vector<float> y = dequant(q);
      const std::vector<float> am = sllm::quant::dequantized_absmax(q);
      for (size_t i = 0; i < x.size(); ++i) {
        const float a = am[i / 64];
        // Largest gap between neighbouring codes: NF4 1 - 0.723, FP4 1 - 0.667; plus the absmax
        // error.
        EXPECT_LE(std::fabs(x[i] - y[i]), 0.17f * a + 0.02f) << type << " dq=" << dq << " i=" << i;
      }
    }
  }
}

TEST(Nf4Bnb, FixtureA_Nf4DoubleQuant) {
  const std::vector<float> x = formula_input(301, 64);
  Nf4Weight q = quantize(x, 64, "nf4", true);
  EXPECT_EQ(hex(q.weight),
            "17e29f3b05d17e2af4c06d18e2a04c16e29f3b05d17e29f3c05d18e2af4c16e19f3b05d17e29f3b05d18e2"
            "af4c06e18e3b04d17e2"
            "9f3b05d17e2af4c06d18e2a04c16e29f3b05d17e29f3c05d18e2af4c16e18e3b05d17e29f3b05d18e2af4c"
            "16d18e3b04c17e29f3b"
            "05d17e2af4c06d18e2a04c16e29f3b05d17e29f3c05d18e2af4c16e18e3b05d17e29f3b05d18e2af4c16d1"
            "8e3b07");
  EXPECT_EQ(hex(q.absmax_q), "183dd7ff18");
  ASSERT_EQ(q.nested_absmax.size(), 1u);
  EXPECT_EQ(bits(q.nested_absmax[0]), 0x3fe76c8cu);
  EXPECT_EQ(bits(q.offset), 0x400c49bau);
  EXPECT_EQ(
      quant_state_json(q),
      R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [301], "nested_blocksize": 256, )"
      R"("nested_dtype": "float32", "nested_offset": 2.191999912261963})");
  // Dequantized absmax close to the true one (1, 1.96, 3, 4, 1).
  const float truth[5] = {1.0f, 1.96f, 3.0f, 4.0f, 1.0f};
  const std::vector<float> am = sllm::quant::dequantized_absmax(q);
  for (int b = 0; b < 5; ++b) EXPECT_NEAR(am[b], truth[b], 0.02f * truth[b]) << b;
  const std::vector<float> y = dequant(q);
  EXPECT_EQ(bits(y[0]), 0xbf337512u);
  EXPECT_EQ(bits(y[2]), 0x3f3a5b34u);
  EXPECT_EQ(fnv1a64(y.data(), y.size() * 4), 0x43e67c228909a5eeull);
}

TEST(Nf4Bnb, FixtureB_Fp4Plain) {
  const std::vector<float> x = formula_input(301, 128);
  Nf4Weight q = quantize(x, 128, "fp4", false);
  EXPECT_EQ(hex(q.weight),
            "a92d63c4be5a12d73c5be2a12d7bf5a92a63c4be5a02d63c4be2a12d73f5a92a63d4bf5a92d63c4be5a12d"
            "73c5be2a63d4bf5a9"
            "2d63c4be5a12d73c5be2a12d7bf5a92a63c4be5a02d63c4be2a12d73f5a92a63d4bf5a92d63c4be5a12d73"
            "c5be2a63d4bf5a92d63"
            "c4be5a12d73c5be2a12d7bf5a92a63c4be5a02d63c4be2a12d73f5a92a63d4bf5a92d63c4be5a12d73c5be"
            "2a63d4b0");
  ASSERT_EQ(q.absmax.size(), 3u);
  EXPECT_EQ(q.absmax[0], 1.0f);
  EXPECT_EQ(q.absmax[1], 2.0f);
  EXPECT_EQ(q.absmax[2], 3.0f);
  EXPECT_TRUE(q.absmax_q.empty());
  EXPECT_EQ(quant_state_json(q),
            R"({"quant_type": "fp4", "blocksize": 128, "dtype": "float32", "shape": [301]})");
  const std::vector<float> y = dequant(q);
  EXPECT_EQ(fnv1a64(y.data(), y.size() * 4), 0x084facec2598048full);
}

TEST(Nf4Bnb, FixtureC_TwoNestedBlocks) {
  const std::vector<float> x = formula_input(19200, 64);
  Nf4Weight q = quantize(x, 64, "nf4", true);
  EXPECT_EQ(fnv1a64(q.weight.data(), q.weight.size()), 0x4b1706c2ad5b2f51ull);
  EXPECT_EQ(bits(q.offset), 0x401fc734u);
  ASSERT_EQ(q.nested_absmax.size(), 2u);
  EXPECT_EQ(bits(q.nested_absmax[0]), 0x3fc21dc4u);
  EXPECT_EQ(bits(q.nested_absmax[1]), 0x3fc07198u);
  std::string expect;
  // 300 codes: the pattern of absmax 1, 1.96, 3, 4 (with a 4.0 every 13th... as bnb produced).
  expect =
      "002dcffe002fcffe002fcffe002fcffe002fcffe002fcffa002fcffe002fcffe002fcffe002fcffe002fccfe002f"
      "cffe002fcffe"
      "002dcffe002fcffe002fcffe002fcffe002fcffe002fcffe002fcffe002fcffa002fcffe002fcffe002fcffe002f"
      "cffe002fccfe"
      "002fcffe002fcffe002dcffe002fcffe002fcffe002fcffe002fcffe002fcffe002fcffe002fcffa002fcffe002f"
      "cffe002fccfe"
      "002fcffe002fcffe002fcffe002fcffe002dcffe002fcffe002fcffe002fcffe002fcffe002fcffe002fcffe002f"
      "cffa002fcffe"
      "002fcffe002fccfe002fcffe002fcffe002dcffe002fcffe002fcffe002fcffe002fcffe002fcffe002fcffe002f"
      "cffa002fcfff"
      "002fcfff002fcfff002fcfff002fccff002fcfff002fcfff002dcfff002fcfff002fcfff002fcfff";
  EXPECT_EQ(hex(q.absmax_q), expect);
  EXPECT_EQ(
      quant_state_json(q),
      R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [19200], "nested_blocksize": 256, )"
      R"("nested_dtype": "float32", "nested_offset": 2.4965333938598633})");
}

TEST(Nf4Json, ParsesAndKeepsMultiDimShape) {
  std::vector<float> x(8 * 16, 0.25f);
  Nf4Options o;
  o.double_quant = true;
  Nf4Weight q = sllm::quant::quantize_nf4(x.data(), {8, 16}, o);
  const std::string s = quant_state_json(q);
  EXPECT_NE(s.find(R"("shape": [8, 16])"), std::string::npos) << s;
  const auto j = nlohmann::json::parse(s);
  EXPECT_EQ(j["quant_type"], "nf4");
  EXPECT_EQ(j["nested_blocksize"], 256);
  EXPECT_EQ(j["shape"][1], 16);
}

TEST(Nf4Errors, BadInputsThrow) {
  std::vector<float> x(128, 1.0f);
  auto q = [&](Nf4Options o, std::vector<int64_t> shape) {
    return sllm::quant::quantize_nf4(x.data(), shape, o);
  };
  Nf4Options o;
  EXPECT_NO_THROW(q(o, {128}));
  o.blocksize = 96;
  EXPECT_THROW(q(o, {128}), sllm::Error);
  o.blocksize = 32;
  EXPECT_THROW(q(o, {128}), sllm::Error);
  o.blocksize = 8192;
  EXPECT_THROW(q(o, {128}), sllm::Error);
  o = {};
  o.quant_type = "int4";
  EXPECT_THROW(q(o, {128}), sllm::Error);
  o = {};
  o.nested_blocksize = 128;
  EXPECT_THROW(q(o, {128}), sllm::Error);
  o = {};
  EXPECT_THROW(q(o, {}), sllm::Error);
  EXPECT_THROW(q(o, {0, 4}), sllm::Error);
  EXPECT_THROW(sllm::quant::quantize_nf4(nullptr, {4}, o), sllm::Error);
  Nf4Weight w = q(o, {128});
  w.weight.pop_back();
  std::vector<float> out(128);
  EXPECT_THROW(sllm::quant::dequantize(w, out.data()), sllm::Error);
}

}  // namespace
