// GPTQ v1 / AWQ GEMM bit packing. See intq_pack.h and docs/quant_formats.md.
#include "quant/intq_pack.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace sllm::quant {
namespace {

void check_dims(int64_t out, int64_t in, const char* what) {
  SLLM_CHECK(out > 0 && in > 0, "{}: invalid weight shape [{}, {}]", what, out, in);
}

int gptq_per_word(int bits) {
  SLLM_CHECK(bits != 3,
             "3-bit GPTQ packing (values straddling 32-bit words) is not supported; use 2, 4 or "
             "8 bits");
  SLLM_CHECK(bits == 2 || bits == 4 || bits == 8, "GPTQ packing supports 2, 4 or 8 bits, not {}",
             bits);
  return 32 / bits;
}

// 1 in every field of a word: what v1 subtracts from (and unpacking adds back to) qzeros.
uint32_t field_ones(int bits) {
  uint32_t c = 0;
  for (int s = 0; s < 32; s += bits) c |= 1u << s;
  return c;
}

uint32_t checked_value(uint8_t v, int bits, int64_t o, int64_t i) {
  SLLM_CHECK(v < (1u << bits), "quantized value {} at [{}, {}] does not fit in {} bits", v, o, i,
             bits);
  return v;
}

uint32_t checked_zero(float z, int bits, int64_t o, int64_t g) {
  SLLM_CHECK(std::isfinite(z) && z == std::nearbyint(z) && z >= 0 && z < (1 << bits),
             "zero point {} at [{}, {}] is not an integer in [0, {}]", z, o, g, (1 << bits) - 1);
  return static_cast<uint32_t>(z);
}

int32_t as_i32(uint32_t w) {
  int32_t r;
  std::memcpy(&r, &w, sizeof r);
  return r;
}

uint32_t as_u32(int32_t w) {
  uint32_t r;
  std::memcpy(&r, &w, sizeof r);
  return r;
}

}  // namespace

uint16_t fp32_to_fp16_bits(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof x);
  const auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t a = x & 0x7FFFFFFFu;
  if (a >= 0x7F800000u)  // inf, or NaN (kept quiet)
    return sign | (a > 0x7F800000u ? 0x7E00u : 0x7C00u);
  if (a >= 0x477FF000u) return sign | 0x7C00u;  // >= 65520 rounds to infinity
  if (a < 0x38800000u) {                        // below 2^-14: a multiple of 2^-24 (subnormal)
    float v;
    std::memcpy(&v, &a, sizeof v);
    return sign | static_cast<uint16_t>(std::nearbyint(v * 16777216.0f));  // ties to even
  }
  const uint32_t r = a + 0xFFFu + ((a >> 13) & 1u);  // round the 13 dropped bits, ties to even
  return sign | static_cast<uint16_t>((r - 0x38000000u) >> 13);  // exponent bias 127 -> 15
}

float fp16_bits_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  uint32_t x;
  if (e == 0x1F) {
    x = sign | 0x7F800000u | (m << 13);
  } else if (e != 0) {
    x = sign | ((e + 112) << 23) | (m << 13);
  } else {
    const float v = static_cast<float>(m) * (1.0f / 16777216.0f);  // exact: m * 2^-24
    std::memcpy(&x, &v, sizeof x);
    x |= sign;
  }
  float f;
  std::memcpy(&f, &x, sizeof f);
  return f;
}

std::vector<int32_t> gptq_pack_qweight(const uint8_t* q, int64_t out, int64_t in, int bits) {
  const int per = gptq_per_word(bits);
  check_dims(out, in, "GPTQ qweight");
  SLLM_CHECK(in % per == 0,
             "GPTQ {}-bit packing needs in_features divisible by {}, got {} (qweight packs "
             "{} input rows per int32)",
             bits, per, in, per);
  const int64_t rows = in / per;
  std::vector<uint32_t> w(static_cast<size_t>(rows * out), 0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      w[(i / per) * out + o] |= checked_value(q[o * in + i], bits, o, i) << ((i % per) * bits);
  std::vector<int32_t> r(w.size());
  for (size_t k = 0; k < w.size(); ++k) r[k] = as_i32(w[k]);
  return r;
}

std::vector<uint8_t> gptq_unpack_qweight(const int32_t* qweight, int64_t out, int64_t in,
                                         int bits) {
  const int per = gptq_per_word(bits);
  check_dims(out, in, "GPTQ qweight");
  SLLM_CHECK(in % per == 0, "GPTQ {}-bit qweight needs in_features divisible by {}, got {}", bits,
             per, in);
  const uint32_t mask = (1u << bits) - 1;
  std::vector<uint8_t> q(static_cast<size_t>(out * in));
  for (int64_t i = 0; i < in; ++i) {
    const int32_t* row = qweight + (i / per) * out;
    const int shift = static_cast<int>(i % per) * bits;
    for (int64_t o = 0; o < out; ++o)
      q[o * in + i] = static_cast<uint8_t>((as_u32(row[o]) >> shift) & mask);
  }
  return q;
}

std::vector<int32_t> gptq_pack_qzeros(const float* zeros, int64_t out, int64_t groups, int bits,
                                      bool v1) {
  const int per = gptq_per_word(bits);
  check_dims(out, groups, "GPTQ qzeros");
  SLLM_CHECK(out % per == 0,
             "GPTQ {}-bit packing needs out_features divisible by {}, got {} (qzeros packs {} "
             "output columns per int32)",
             bits, per, out, per);
  const int64_t cols = out / per;
  const uint32_t ones = v1 ? field_ones(bits) : 0;
  std::vector<int32_t> r(static_cast<size_t>(groups * cols));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t c = 0; c < cols; ++c) {
      uint32_t w = 0;
      for (int k = 0; k < per; ++k) {
        const int64_t o = c * per + k;
        w |= checked_zero(zeros[o * groups + g], bits, o, g) << (k * bits);
      }
      r[g * cols + c] = as_i32(w - ones);  // unsigned: wraps as the int32 tensor op does
    }
  return r;
}

std::vector<float> gptq_unpack_qzeros(const int32_t* qzeros, int64_t out, int64_t groups, int bits,
                                      bool v1) {
  const int per = gptq_per_word(bits);
  check_dims(out, groups, "GPTQ qzeros");
  SLLM_CHECK(out % per == 0, "GPTQ {}-bit qzeros needs out_features divisible by {}, got {}", bits,
             per, out);
  const int64_t cols = out / per;
  const uint32_t ones = v1 ? field_ones(bits) : 0, mask = (1u << bits) - 1;
  std::vector<float> z(static_cast<size_t>(out * groups));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t c = 0; c < cols; ++c) {
      const uint32_t w = as_u32(qzeros[g * cols + c]) + ones;
      for (int k = 0; k < per; ++k)
        z[(c * per + k) * groups + g] = static_cast<float>((w >> (k * bits)) & mask);
    }
  return z;
}

std::vector<int32_t> awq_pack_qweight(const uint8_t* q, int64_t out, int64_t in) {
  check_dims(out, in, "AWQ qweight");
  SLLM_CHECK(out % 8 == 0,
             "AWQ GEMM packing needs out_features divisible by 8, got {} (8 output columns per "
             "int32)",
             out);
  const int64_t cols = out / 8;
  std::vector<uint32_t> w(static_cast<size_t>(in * cols), 0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      w[i * cols + o / 8] |= checked_value(q[o * in + i], 4, o, i) << (kAwqNibbleOf[o % 8] * 4);
  std::vector<int32_t> r(w.size());
  for (size_t k = 0; k < w.size(); ++k) r[k] = as_i32(w[k]);
  return r;
}

std::vector<uint8_t> awq_unpack_qweight(const int32_t* qweight, int64_t out, int64_t in) {
  check_dims(out, in, "AWQ qweight");
  SLLM_CHECK(out % 8 == 0, "AWQ GEMM qweight needs out_features divisible by 8, got {}", out);
  const int64_t cols = out / 8;
  std::vector<uint8_t> q(static_cast<size_t>(out * in));
  for (int64_t i = 0; i < in; ++i)
    for (int64_t o = 0; o < out; ++o)
      q[o * in + i] = static_cast<uint8_t>(
          (as_u32(qweight[i * cols + o / 8]) >> (kAwqNibbleOf[o % 8] * 4)) & 0xFu);
  return q;
}

std::vector<int32_t> awq_pack_qzeros(const float* zeros, int64_t out, int64_t groups) {
  check_dims(out, groups, "AWQ qzeros");
  SLLM_CHECK(out % 8 == 0, "AWQ GEMM packing needs out_features divisible by 8, got {}", out);
  const int64_t cols = out / 8;
  std::vector<uint32_t> w(static_cast<size_t>(groups * cols), 0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t g = 0; g < groups; ++g)
      w[g * cols + o / 8] |= checked_zero(zeros[o * groups + g], 4, o, g)
                             << (kAwqNibbleOf[o % 8] * 4);
  std::vector<int32_t> r(w.size());
  for (size_t k = 0; k < w.size(); ++k) r[k] = as_i32(w[k]);
  return r;
}

std::vector<float> awq_unpack_qzeros(const int32_t* qzeros, int64_t out, int64_t groups) {
  check_dims(out, groups, "AWQ qzeros");
  SLLM_CHECK(out % 8 == 0, "AWQ GEMM qzeros needs out_features divisible by 8, got {}", out);
  const int64_t cols = out / 8;
  std::vector<float> z(static_cast<size_t>(out * groups));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t g = 0; g < groups; ++g)
      z[o * groups + g] = static_cast<float>(
          (as_u32(qzeros[g * cols + o / 8]) >> (kAwqNibbleOf[o % 8] * 4)) & 0xFu);
  return z;
}

std::vector<uint16_t> pack_scales_fp16(const float* scales, int64_t out, int64_t groups) {
  check_dims(out, groups, "scales");
  std::vector<uint16_t> s(static_cast<size_t>(groups * out));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t g = 0; g < groups; ++g) {
      const float v = scales[o * groups + g];
      const uint16_t h = fp32_to_fp16_bits(v);
      SLLM_CHECK(std::isfinite(v) && fp16_bits_to_fp32(h) == v,
                 "scale {} at [{}, {}] is not an fp16 value (checkpoints store fp16 scales; "
                 "quantizers must round them)",
                 v, o, g);
      s[g * out + o] = h;
    }
  return s;
}

std::vector<float> unpack_scales_fp16(const uint16_t* scales, int64_t out, int64_t groups) {
  check_dims(out, groups, "scales");
  std::vector<float> s(static_cast<size_t>(out * groups));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t o = 0; o < out; ++o) s[o * groups + g] = fp16_bits_to_fp32(scales[g * out + o]);
  return s;
}

}  // namespace sllm::quant
