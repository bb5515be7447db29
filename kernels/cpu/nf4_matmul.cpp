#include "kernels/cpu/nf4_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#define SLLM_NF4_X86 1
#include <immintrin.h>
#endif

namespace sllm::kernels::cpu {
namespace {

inline int nibble(const uint8_t* packed, int64_t i) {
  const uint8_t b = packed[i >> 1];
  return (i & 1) ? (b & 0x0F) : (b >> 4);
}

inline uint16_t bf16_bits(float v) {
  if (std::isnan(v)) return 0x7FC0;
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// Calls f(block, s, e) for each block-aligned segment [s, e) of [e0, e1).
template <class F>
inline void for_each_block_segment(int64_t e0, int64_t e1, int64_t blocksize, F&& f) {
  for (int64_t s = e0, blk = e0 / blocksize; s < e1; ++blk) {
    const int64_t e = std::min(e1, (blk + 1) * blocksize);
    f(blk, s, e);
    s = e;
  }
}

// ---- scalar ----

void dequant_f32_scalar(const uint8_t* packed, const float* absmax, const float* code,
                        int64_t blocksize, int64_t e0, int64_t e1, float* out) {
  for_each_block_segment(e0, e1, blocksize, [&](int64_t blk, int64_t s, int64_t e) {
    const float a = absmax[blk];
    for (int64_t i = s; i < e; ++i) out[i] = code[nibble(packed, i)] * a;
  });
}

void dequant_bf16_scalar(const uint8_t* packed, const float* absmax, const float* code,
                         int64_t blocksize, int64_t e0, int64_t e1, uint16_t* out) {
  for_each_block_segment(e0, e1, blocksize, [&](int64_t blk, int64_t s, int64_t e) {
    const float a = absmax[blk];
    for (int64_t i = s; i < e; ++i) out[i] = bf16_bits(code[nibble(packed, i)] * a);
  });
}

void gemv_scalar(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                 int64_t in, const float* x, const float* bias, float* y, int64_t o0, int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) {
    const int64_t r0 = o * in;
    float acc = 0.f;
    for_each_block_segment(r0, r0 + in, blocksize, [&](int64_t blk, int64_t s, int64_t e) {
      float part = 0.f;
      for (int64_t i = s; i < e; ++i) part += code[nibble(packed, i)] * x[i - r0];
      acc += part * absmax[blk];
    });
    y[o] = bias ? acc + bias[o] : acc;
  }
}

// ---- AVX2 + FMA ----
#ifdef SLLM_NF4_X86

#define SLLM_AVX2 __attribute__((target("avx2,fma")))

struct Lut {
  __m256 lo, hi;  // code[0..7], code[8..15]
};

SLLM_AVX2 inline Lut make_lut(const float* code) {
  return {_mm256_loadu_ps(code), _mm256_loadu_ps(code + 8)};
}

// The 8 codes of the 4 bytes at p (element order: byte 0 high, byte 0 low, byte 1 high, ...) in
// the low 4 bits of each lane; the bits above are garbage that lookup8 never reads.
SLLM_AVX2 inline __m256i unpack8(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  const __m256i shifts = _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24);
  return _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w)), shifts);
}

// code[idx & 15] for 8 lanes: two in-register permutes (low 3 bits) and a blend on bit 3.
SLLM_AVX2 inline __m256 lookup8(const Lut& lut, __m256i idx) {
  const __m256 lo = _mm256_permutevar8x32_ps(lut.lo, idx);
  const __m256 hi = _mm256_permutevar8x32_ps(lut.hi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

SLLM_AVX2 inline __m128i to_bf16x8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(nan));
  const __m256i packed = _mm256_packus_epi32(r, r);  // per lane: r0..3 r0..3 | r4..7 r4..7
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}

SLLM_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

SLLM_AVX2 void dequant_f32_avx2(const uint8_t* packed, const float* absmax, const float* code,
                                int64_t blocksize, int64_t e0, int64_t e1, float* out) {
  const Lut lut = make_lut(code);
  for (int64_t s = e0, blk = e0 / blocksize; s < e1; ++blk) {
    const int64_t e = std::min(e1, (blk + 1) * blocksize);
    const float a = absmax[blk];
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = s;
    s = e;
    if (i & 1) {
      out[i] = code[nibble(packed, i)] * a;
      ++i;
    }
    for (; i + 8 <= e; i += 8)
      _mm256_storeu_ps(out + i, _mm256_mul_ps(lookup8(lut, unpack8(packed + (i >> 1))), av));
    for (; i < e; ++i) out[i] = code[nibble(packed, i)] * a;
  }
}

SLLM_AVX2 void dequant_bf16_avx2(const uint8_t* packed, const float* absmax, const float* code,
                                 int64_t blocksize, int64_t e0, int64_t e1, uint16_t* out) {
  const Lut lut = make_lut(code);
  for (int64_t s = e0, blk = e0 / blocksize; s < e1; ++blk) {
    const int64_t e = std::min(e1, (blk + 1) * blocksize);
    const float a = absmax[blk];
    const __m256 av = _mm256_set1_ps(a);
    int64_t i = s;
    s = e;
    if (i & 1) {
      out[i] = bf16_bits(code[nibble(packed, i)] * a);
      ++i;
    }
    for (; i + 8 <= e; i += 8) {
      const __m256 v = _mm256_mul_ps(lookup8(lut, unpack8(packed + (i >> 1))), av);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), to_bf16x8(v));
    }
    for (; i < e; ++i) out[i] = bf16_bits(code[nibble(packed, i)] * a);
  }
}

SLLM_AVX2 void gemv_avx2(const uint8_t* packed, const float* absmax, const float* code,
                         int64_t blocksize, int64_t in, const float* x, const float* bias, float* y,
                         int64_t o0, int64_t o1) {
  const Lut lut = make_lut(code);
  for (int64_t o = o0; o < o1; ++o) {
    const int64_t r0 = o * in;
    const int64_t r1 = r0 + in;
    __m256 acc = _mm256_setzero_ps();
    float sacc = 0.f;
    for (int64_t s = r0, blk = r0 / blocksize; s < r1; ++blk) {
      const int64_t e = std::min(r1, (blk + 1) * blocksize);
      const float a = absmax[blk];
      const int64_t seg = s;
      const float* xs = x + (seg - r0);  // xs[i - seg] = x at flat element index i
      __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps();
      float sp = 0.f;
      int64_t i = s;
      s = e;
      if (i & 1) {
        sp += code[nibble(packed, i)] * xs[i - seg];
        ++i;
      }
      for (; i + 16 <= e; i += 16) {
        const uint8_t* p = packed + (i >> 1);
        p0 = _mm256_fmadd_ps(lookup8(lut, unpack8(p)), _mm256_loadu_ps(xs + (i - seg)), p0);
        p1 = _mm256_fmadd_ps(lookup8(lut, unpack8(p + 4)), _mm256_loadu_ps(xs + (i - seg) + 8), p1);
      }
      if (i + 8 <= e) {
        p0 = _mm256_fmadd_ps(lookup8(lut, unpack8(packed + (i >> 1))),
                             _mm256_loadu_ps(xs + (i - seg)), p0);
        i += 8;
      }
      for (; i < e; ++i) sp += code[nibble(packed, i)] * xs[i - seg];
      acc = _mm256_fmadd_ps(_mm256_add_ps(p0, p1), _mm256_set1_ps(a), acc);
      sacc += sp * a;
    }
    const float r = hsum(acc) + sacc;
    y[o] = bias ? r + bias[o] : r;
  }
}

// ---- AVX-512F ----

#define SLLM_AVX512 __attribute__((target("avx512f,avx2,fma")))
// GCC 12 warns on the deliberately undefined pass-through operand inside its own AVX-512
// intrinsics (_mm512_undefined_epi32) when they are inlined into target("avx512f") functions.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// The 16 codes of the 8 bytes at p, in element order, in the low 4 bits of each lane (the bits
// above are garbage that _mm512_permutexvar_ps ignores): dword 0 of the bytes feeds lanes 0-7,
// dword 1 lanes 8-15, each shifted to its nibble.
SLLM_AVX512 inline __m512i unpack16(const uint8_t* p) {
  const __m512i words =
      _mm512_zextsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const __m512i shifts =
      _mm512_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24, 4, 0, 12, 8, 20, 16, 28, 24);
  return _mm512_srlv_epi32(_mm512_permutexvar_epi32(spread, words), shifts);
}

SLLM_AVX512 void dequant_f32_avx512(const uint8_t* packed, const float* absmax, const float* code,
                                    int64_t blocksize, int64_t e0, int64_t e1, float* out) {
  const __m512 lut = _mm512_loadu_ps(code);
  for (int64_t s = e0, blk = e0 / blocksize; s < e1; ++blk) {
    const int64_t e = std::min(e1, (blk + 1) * blocksize);
    const float a = absmax[blk];
    const __m512 av = _mm512_set1_ps(a);
    int64_t i = s;
    s = e;
    if (i & 1) {
      out[i] = code[nibble(packed, i)] * a;
      ++i;
    }
    for (; i + 16 <= e; i += 16)
      _mm512_storeu_ps(out + i,
                       _mm512_mul_ps(_mm512_permutexvar_ps(unpack16(packed + (i >> 1)), lut), av));
    for (; i < e; ++i) out[i] = code[nibble(packed, i)] * a;
  }
}

SLLM_AVX512 void gemv_avx512(const uint8_t* packed, const float* absmax, const float* code,
                             int64_t blocksize, int64_t in, const float* x, const float* bias,
                             float* y, int64_t o0, int64_t o1) {
  const __m512 lut = _mm512_loadu_ps(code);
  for (int64_t o = o0; o < o1; ++o) {
    const int64_t r0 = o * in;
    const int64_t r1 = r0 + in;
    __m512 acc = _mm512_setzero_ps();
    float sacc = 0.f;
    for (int64_t s = r0, blk = r0 / blocksize; s < r1; ++blk) {
      const int64_t e = std::min(r1, (blk + 1) * blocksize);
      const float a = absmax[blk];
      const int64_t seg = s;
      const float* xs = x + (seg - r0);  // xs[i - seg] = x at flat element index i
      __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps();
      float sp = 0.f;
      int64_t i = s;
      s = e;
      if (i & 1) {
        sp += code[nibble(packed, i)] * xs[i - seg];
        ++i;
      }
      for (; i + 32 <= e; i += 32) {
        const uint8_t* p = packed + (i >> 1);
        p0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(unpack16(p), lut),
                             _mm512_loadu_ps(xs + (i - seg)), p0);
        p1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(unpack16(p + 8), lut),
                             _mm512_loadu_ps(xs + (i - seg) + 16), p1);
      }
      if (i + 16 <= e) {
        p0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(unpack16(packed + (i >> 1)), lut),
                             _mm512_loadu_ps(xs + (i - seg)), p0);
        i += 16;
      }
      for (; i < e; ++i) sp += code[nibble(packed, i)] * xs[i - seg];
      acc = _mm512_fmadd_ps(_mm512_add_ps(p0, p1), _mm512_set1_ps(a), acc);
      sacc += sp * a;
    }
    const float r = _mm512_reduce_add_ps(acc) + sacc;
    y[o] = bias ? r + bias[o] : r;
  }
}

// code[] of the 16 weights of the 8 bytes at p, in gemv_avx512_grouped's lane order.
SLLM_AVX512 inline __m512 group16(const uint8_t* p, __m512i shifts, __m512 lut) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return _mm512_permutexvar_ps(
      _mm512_srlv_epi32(_mm512_set1_epi64(static_cast<long long>(w)), shifts), lut);
}

// Fast GEMV for in % 16 == 0 and blocksize % 16 == 0 (every block segment of a row is whole
// groups of 16 weights). One 8-byte broadcast feeds all 16 lanes: the even dword lanes see bytes
// 0-3, the odd ones bytes 4-7, so after the per-lane shifts lane 2m holds weight m and lane
// 2m + 1 weight 8 + m of the group. x is permuted into that order once per call (xg, see
// group_x) instead of shuffling every group of weights.
SLLM_AVX512 void gemv_avx512_grouped(const uint8_t* packed, const float* absmax, const float* code,
                                     int64_t blocksize, int64_t in, const float* xg,
                                     const float* bias, float* y, int64_t o0, int64_t o1) {
  const __m512 lut = _mm512_loadu_ps(code);
  const __m512i shifts =
      _mm512_setr_epi32(4, 4, 0, 0, 12, 12, 8, 8, 20, 20, 16, 16, 28, 28, 24, 24);
  for (int64_t o = o0; o < o1; ++o) {
    const int64_t r0 = o * in;
    const int64_t r1 = r0 + in;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t s = r0, blk = r0 / blocksize; s < r1; ++blk) {
      const int64_t e = std::min(r1, (blk + 1) * blocksize);
      __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps();
      int64_t i = s;
      for (; i + 32 <= e; i += 32) {
        const uint8_t* p = packed + (i >> 1);
        p0 = _mm512_fmadd_ps(group16(p, shifts, lut), _mm512_loadu_ps(xg + (i - r0)), p0);
        p1 = _mm512_fmadd_ps(group16(p + 8, shifts, lut), _mm512_loadu_ps(xg + (i - r0) + 16), p1);
      }
      if (i < e)
        p0 = _mm512_fmadd_ps(group16(packed + (i >> 1), shifts, lut),
                             _mm512_loadu_ps(xg + (i - r0)), p0);
      acc = _mm512_fmadd_ps(_mm512_add_ps(p0, p1), _mm512_set1_ps(absmax[blk]), acc);
      s = e;
    }
    const float r = _mm512_reduce_add_ps(acc);
    y[o] = bias ? r + bias[o] : r;
  }
}

// x in the lane order of gemv_avx512_grouped: within each group of 16, x[m] then x[8 + m].
const float* group_x(const float* x, int64_t in) {
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(in));
  for (int64_t g = 0; g < in; g += 16)
    for (int m = 0; m < 8; ++m) {
      buf[g + 2 * m] = x[g + m];
      buf[g + 2 * m + 1] = x[g + 8 + m];
    }
  return buf.data();
}

#pragma GCC diagnostic pop
#undef SLLM_AVX512

enum class Path { kScalar, kAvx2, kAvx512 };
Path pick(Nf4Simd simd) {
  if (simd == Nf4Simd::kScalar) return Path::kScalar;
  if (simd != Nf4Simd::kAvx2 && nf4_has_avx512()) return Path::kAvx512;
  return nf4_has_avx2() ? Path::kAvx2 : Path::kScalar;
}

#undef SLLM_AVX2
#endif  // SLLM_NF4_X86

}  // namespace

bool nf4_has_avx2() {
#ifdef SLLM_NF4_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

bool nf4_has_avx512() {
#ifdef SLLM_NF4_X86
  static const bool ok = nf4_has_avx2() && __builtin_cpu_supports("avx512f");
  return ok;
#else
  return false;
#endif
}

void nf4_dequantize_f32(const uint8_t* packed, const float* absmax, const float* code,
                        int64_t blocksize, int64_t e0, int64_t e1, float* out, Nf4Simd simd) {
#ifdef SLLM_NF4_X86
  switch (pick(simd)) {
    case Path::kAvx512:
      return dequant_f32_avx512(packed, absmax, code, blocksize, e0, e1, out);
    case Path::kAvx2:
      return dequant_f32_avx2(packed, absmax, code, blocksize, e0, e1, out);
    case Path::kScalar:
      break;
  }
#endif
  dequant_f32_scalar(packed, absmax, code, blocksize, e0, e1, out);
}

void nf4_dequantize_bf16(const uint8_t* packed, const float* absmax, const float* code,
                         int64_t blocksize, int64_t e0, int64_t e1, uint16_t* out, Nf4Simd simd) {
#ifdef SLLM_NF4_X86
  if (pick(simd) != Path::kScalar)
    return dequant_bf16_avx2(packed, absmax, code, blocksize, e0, e1, out);
#endif
  dequant_bf16_scalar(packed, absmax, code, blocksize, e0, e1, out);
}

void nf4_gemv_f32(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                  int64_t in, const float* x, const float* bias, float* y, int64_t o0, int64_t o1,
                  Nf4Simd simd) {
#ifdef SLLM_NF4_X86
  switch (pick(simd)) {
    case Path::kAvx512:
      if (in % 16 == 0 && blocksize % 16 == 0)
        return gemv_avx512_grouped(packed, absmax, code, blocksize, in, group_x(x, in), bias, y, o0,
                                   o1);
      return gemv_avx512(packed, absmax, code, blocksize, in, x, bias, y, o0, o1);
    case Path::kAvx2:
      return gemv_avx2(packed, absmax, code, blocksize, in, x, bias, y, o0, o1);
    case Path::kScalar:
      break;
  }
#endif
  gemv_scalar(packed, absmax, code, blocksize, in, x, bias, y, o0, o1);
}

}  // namespace sllm::kernels::cpu
