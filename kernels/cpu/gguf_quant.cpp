#include "kernels/cpu/gguf_quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "kernels/cpu/gguf_dequant.h"

namespace sllm::kernels::cpu {
namespace {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// Little-endian store: blocks sit at arbitrary byte offsets.
inline void st16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xff);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// The 4-bit codes of a 32-element block, min(15, (int8)v(j)), packed as ggml does: element j in
// the low nibble of byte j, element j + 16 in its high nibble.
template <typename F>
inline void pack_nibbles(uint8_t* qs, F v) {
  for (int j = 0; j < 16; ++j) {
    const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(v(j))));
    const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(v(j + 16))));
    qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

}  // namespace

uint16_t fp32_to_fp16(float f) {
  uint32_t u = bits_of(f);
  const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x47800000u)  // |f| >= 65536 (inf), or NaN
    return static_cast<uint16_t>(sign |
                                 (u > 0x7f800000u ? 0x7e00u | ((u >> 13) & 0x3ffu) : 0x7c00u));
  if (u < 0x38800000u) {
    // Subnormal or zero half: adding 0.5 (2^-1) aligns the float's mantissa so that the hardware
    // addition rounds to nearest even at the half's last subnormal bit (2^-24).
    const float magic = float_of(126u << 23);
    return static_cast<uint16_t>(sign | (bits_of(float_of(u) + magic) - (126u << 23)));
  }
  // Normal half: rebias the exponent, round to nearest even on the 13 dropped bits (a carry into
  // the exponent is correct, up to inf).
  const uint32_t odd = (u >> 13) & 1u;
  u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (u >> 13));
}

void f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
  auto* p = reinterpret_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) st16(p + 2 * i, fp32_to_fp16(src[i]));
}

void quant_q4_0(const float* x, void* dst, int64_t n) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / kQK4_0; ++i, x += kQK4_0, b += kQ4_0Bytes) {
    float amax = 0.0f, max = 0.0f;  // the first element of largest magnitude, with its sign
    for (int j = 0; j < kQK4_0; ++j)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(b, fp32_to_fp16(d));
    pack_nibbles(b + 2, [&](int j) { return x[j] * id + 8.5f; });
  }
}

void quant_q4_1(const float* x, void* dst, int64_t n) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / kQK4_1; ++i, x += kQK4_1, b += kQ4_1Bytes) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK4_1; ++j) {
      if (x[j] < min) min = x[j];
      if (x[j] > max) max = x[j];
    }
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(b, fp32_to_fp16(d));
    st16(b + 2, fp32_to_fp16(min));
    pack_nibbles(b + 4, [&](int j) { return (x[j] - min) * id + 0.5f; });
  }
}

void quant_q8_0(const float* x, void* dst, int64_t n) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / kQK8_0; ++i, x += kQK8_0, b += kQ8_0Bytes) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(b, fp32_to_fp16(d));
    for (int j = 0; j < kQK8_0; ++j) {
      const float q = std::round(x[j] * id);  // half away from zero, as roundf
      b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
    }
  }
}

}  // namespace sllm::kernels::cpu
