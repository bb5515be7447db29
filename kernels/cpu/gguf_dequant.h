// Raw dequantizers for GGML/GGUF block formats (layouts exactly as in ggml's ggml-common.h).
// Each takes a pointer to packed blocks and n, the number of output elements; n must be a
// multiple of the block size (32 for Q4_0..Q8_1 and IQ4_NL, 256 for K-quants and IQ4_XS).
// The caller checks sizes; a trailing partial block is ignored. Source pointers need no
// particular alignment. Plain loops: these run once, at load time.
#pragma once

#include <cstdint>
#include <cstring>

namespace sllm::kernels::cpu {

// Block sizes (elements) and block byte sizes of the formats below.
inline constexpr int64_t kQK4_0 = 32, kQ4_0Bytes = 18;  // half d; u8 qs[16]
inline constexpr int64_t kQK4_1 = 32, kQ4_1Bytes = 20;  // half d, m; u8 qs[16]
inline constexpr int64_t kQK5_0 = 32, kQ5_0Bytes = 22;  // half d; u8 qh[4]; u8 qs[16]
inline constexpr int64_t kQK5_1 = 32, kQ5_1Bytes = 24;  // half d, m; u8 qh[4]; u8 qs[16]
inline constexpr int64_t kQK8_0 = 32, kQ8_0Bytes = 34;  // half d; i8 qs[32]
inline constexpr int64_t kQK8_1 = 32, kQ8_1Bytes = 36;  // half d, s; i8 qs[32]
inline constexpr int64_t kQK_K = 256;
inline constexpr int64_t kQ2_KBytes = 84;   // u8 scales[16]; u8 qs[64]; half d, dmin
inline constexpr int64_t kQ3_KBytes = 110;  // u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d
inline constexpr int64_t kQ4_KBytes = 144;  // half d, dmin; u8 scales[12]; u8 qs[128]
inline constexpr int64_t kQ5_KBytes = 176;  // half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
inline constexpr int64_t kQ6_KBytes = 210;  // u8 ql[128]; u8 qh[64]; i8 scales[16]; half d
inline constexpr int64_t kQ8_KBytes = 292;  // float d; i8 qs[256]; i16 bsums[16]
inline constexpr int64_t kQKIQ4_NL = 32, kIQ4_NLBytes = 18;  // half d; u8 qs[16]
inline constexpr int64_t kIQ4_XSBytes = 136;  // half d; u16 scales_h; u8 scales_l[4]; u8 qs[128]

// IEEE half -> float, exact (subnormals, +-inf and NaN payloads preserved).
inline float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24, exactly representable in float
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return (h & 0x8000u) ? -v : v;
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + (127 - 15)) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline float bf16_to_fp32(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// 6-bit scale and min j (0..7) of the 12-byte packed K-quant scales (Q4_K, Q5_K).
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void f16_to_f32(const uint16_t* src, float* dst, int64_t n);
void bf16_to_f32(const uint16_t* src, float* dst, int64_t n);

void dequant_q4_0(const void* src, float* dst, int64_t n);
void dequant_q4_1(const void* src, float* dst, int64_t n);
void dequant_q5_0(const void* src, float* dst, int64_t n);
void dequant_q5_1(const void* src, float* dst, int64_t n);
void dequant_q8_0(const void* src, float* dst, int64_t n);
void dequant_q8_1(const void* src, float* dst, int64_t n);
void dequant_q2_k(const void* src, float* dst, int64_t n);
void dequant_q3_k(const void* src, float* dst, int64_t n);
void dequant_q4_k(const void* src, float* dst, int64_t n);
void dequant_q5_k(const void* src, float* dst, int64_t n);
void dequant_q6_k(const void* src, float* dst, int64_t n);
void dequant_q8_k(const void* src, float* dst, int64_t n);
void dequant_iq4_nl(const void* src, float* dst, int64_t n);
void dequant_iq4_xs(const void* src, float* dst, int64_t n);

}  // namespace sllm::kernels::cpu
