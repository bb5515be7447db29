#include "kernels/cpu/intq_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#define SLLM_INTQ_X86 1
#include <immintrin.h>
#endif

namespace sllm::kernels::cpu {
namespace {

inline const uint8_t* row_of(const IntQView& w, int64_t o) {
  return w.q + o * (w.storage_bits == 4 ? w.in / 2 : w.in);
}

inline int qval(int storage_bits, const uint8_t* row, int64_t i) {
  if (storage_bits == 8) return row[i];
  const uint8_t b = row[i >> 1];
  return (i & 1) ? (b >> 4) : (b & 0x0F);
}

// Calls f(g, i0, i1) for each group [i0, i1) of a row.
template <class F>
inline void for_each_group(const IntQView& w, F&& f) {
  for (int64_t g = 0, i0 = 0; i0 < w.in; ++g, i0 += w.group_size)
    f(g, i0, std::min(w.in, i0 + w.group_size));
}

float* row_buffer(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// How far ahead the multi-row tiles prefetch each weight row: they read O rows interleaved, which
// the hardware prefetcher follows poorly when the weights come from L3 / DRAM.
constexpr int64_t kPrefetchBytes = 1024;

// Writes a decoded row (storage order) to its place in the dense output.
inline void scatter_row(const float* src, const int64_t* perm, int64_t in, float* dst) {
  for (int64_t j = 0; j < in; ++j) dst[perm[j]] = src[j];
}

// ---- scalar ----

void decode_row_scalar(const IntQView& w, int64_t o, float* out) {
  const uint8_t* row = row_of(w, o);
  const float* s = w.scales + o * w.groups();
  const float* z = w.zeros + o * w.groups();
  for_each_group(w, [&](int64_t g, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      out[i] = (static_cast<float>(qval(w.storage_bits, row, i)) - z[g]) * s[g];
  });
}

void dequant_scalar(const IntQView& w, const int64_t* perm, int64_t o0, int64_t o1, float* out) {
  float* buf = perm ? row_buffer(w.in) : nullptr;
  for (int64_t o = o0; o < o1; ++o) {
    if (!perm) {
      decode_row_scalar(w, o, out + o * w.in);
      continue;
    }
    decode_row_scalar(w, o, buf);
    scatter_row(buf, perm, w.in, out + o * w.in);
  }
}

// Dot product with 8 partial sums, so the compiler can vectorise it without reassociating.
inline float dot_scalar(const float* a, const float* b, int64_t n) {
  float part[8] = {};
  const int64_t full = n & ~int64_t{7};
  for (int64_t i = 0; i < full; i += 8)
    for (int j = 0; j < 8; ++j) part[j] += a[i + j] * b[i + j];
  float v =
      ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
  for (int64_t i = full; i < n; ++i) v += a[i] * b[i];
  return v;
}

// GEMV and the multi-row GEMM: each weight row is decoded once into a row buffer and dotted with
// every row of x.
void gemm_scalar(const IntQView& w, int64_t rows, const float* x, const float* bias, float* y,
                 int64_t o0, int64_t o1) {
  float* wr = row_buffer(w.in);
  for (int64_t o = o0; o < o1; ++o) {
    decode_row_scalar(w, o, wr);
    for (int64_t r = 0; r < rows; ++r) {
      const float v = dot_scalar(wr, x + r * w.in, w.in);
      y[r * w.out + o] = bias ? v + bias[o] : v;
    }
  }
}

void int8_gemm_scalar(const int8_t* w, const float* scb, int64_t out, int64_t in, int64_t rows,
                      const int8_t* qx, const float* sx, const float* bias, float* y, int64_t o0,
                      int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) {
    const int8_t* wr = w + o * in;
    for (int64_t r = 0; r < rows; ++r) {
      const int8_t* xr = qx + r * in;
      int32_t acc = 0;
      for (int64_t i = 0; i < in; ++i) acc += int32_t{wr[i]} * int32_t{xr[i]};
      const float v = static_cast<float>(acc) * (sx[r] * scb[o]) * kInt8Dequant;
      y[r * out + o] = bias ? v + bias[o] : v;
    }
  }
}

// Row absmax over the elements below the threshold (all when threshold <= 0).
float row_absmax(const float* x, int64_t in, float threshold) {
  float m = 0.f;
  for (int64_t i = 0; i < in; ++i) {
    const float a = std::fabs(x[i]);
    if ((threshold <= 0.f || a < threshold) && a > m) m = a;
  }
  return m;
}

// Values beyond int8 occur only in outlier columns (zeroed afterwards); the clamp keeps the
// conversion defined.
inline int8_t round_int8(float v) {
  return static_cast<int8_t>(std::clamp(std::nearbyint(v), -128.f, 127.f));
}

void quantize_row_scalar(const float* x, int64_t in, float inv, int8_t* q) {
  for (int64_t i = 0; i < in; ++i) q[i] = round_int8(x[i] * inv);
}

// ---- AVX2 + FMA ----
#ifdef SLLM_INTQ_X86

#define SLLM_INTQ_AVX2 __attribute__((target("avx2,fma")))

// x for the storage-4 SIMD decoders, which produce the even elements of a chunk of weights in one
// vector and the odd ones in the next: each chunk of `chunk` values becomes its even-indexed
// values followed by its odd-indexed ones. rows * in values (in % chunk == 0).
const float* split_x(const float* x, int64_t n, int chunk) {
  thread_local std::vector<float> v;
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  float* buf = v.data();
  const int half = chunk / 2;
  for (int64_t c = 0; c < n; c += chunk)
    for (int k = 0; k < half; ++k) {
      buf[c + k] = x[c + 2 * k];
      buf[c + half + k] = x[c + 2 * k + 1];
    }
  return buf;
}

// Sum of x over each group (the zero-point term of the group-sum kernels): [rows, groups].
const float* group_sums(const IntQView& w, const float* x, int64_t rows = 1) {
  thread_local std::vector<float> buf;
  const int64_t G = w.groups();
  buf.assign(static_cast<size_t>(rows * G), 0.f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
      float s = 0.f;
      for (int64_t i = i0; i < i1; ++i) s += x[r * w.in + i];
      buf[r * G + g] = s;
    }
  return buf.data();
}

SLLM_INTQ_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

SLLM_INTQ_AVX2 inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// 16 weights from 8 bytes: the even elements (low nibbles) and the odd ones, as floats.
SLLM_INTQ_AVX2 inline void dec4_avx2(const uint8_t* p, __m256& qe, __m256& qo) {
  const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  qe = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(0x0F)));
  qo = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
}

// 8 weights from 8 bytes.
SLLM_INTQ_AVX2 inline __m256 dec8_avx2(const uint8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <int B>
SLLM_INTQ_AVX2 void dequant_avx2(const IntQView& w, const int64_t* perm, int64_t o0, int64_t o1,
                                 float* out) {
  float* buf = perm ? row_buffer(w.in) : nullptr;
  const int64_t G = w.groups();
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = row_of(w, o);
    float* dst = perm ? buf : out + o * w.in;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
      const __m256 sv = _mm256_set1_ps(w.scales[o * G + g]);
      const __m256 zv = _mm256_set1_ps(w.zeros[o * G + g]);
      if constexpr (B == 4) {
        for (int64_t i = i0; i < i1; i += 16) {
          __m256 qe, qo;
          dec4_avx2(row + i / 2, qe, qo);
          const __m256 we = _mm256_mul_ps(_mm256_sub_ps(qe, zv), sv);
          const __m256 wo = _mm256_mul_ps(_mm256_sub_ps(qo, zv), sv);
          // interleave back to element order
          const __m256 lo = _mm256_unpacklo_ps(we, wo), hi = _mm256_unpackhi_ps(we, wo);
          _mm256_storeu_ps(dst + i, _mm256_permute2f128_ps(lo, hi, 0x20));
          _mm256_storeu_ps(dst + i + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        }
      } else {
        for (int64_t i = i0; i < i1; i += 8)
          _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_sub_ps(dec8_avx2(row + i), zv), sv));
      }
    }
    if (perm) scatter_row(buf, perm, w.in, out + o * w.in);
  }
}

// GEMV with group sums: per group, sum q * x in two accumulators, then scale once; the zero
// term is scale * zero * sum(x over the group). xs: x split for storage 4 (chunks of 16).
template <int B>
SLLM_INTQ_AVX2 void gemv_avx2(const IntQView& w, const float* xs, const float* gsum,
                              const float* bias, float* y, int64_t o0, int64_t o1) {
  const int64_t G = w.groups();
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = row_of(w, o);
    const float* s = w.scales + o * G;
    const float* z = w.zeros + o * G;
    __m256 acc = _mm256_setzero_ps();
    float corr = 0.f;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
      __m256 p0 = _mm256_setzero_ps(), p1 = _mm256_setzero_ps();
      if constexpr (B == 4) {
        for (int64_t i = i0; i < i1; i += 16) {
          __m256 qe, qo;
          dec4_avx2(row + i / 2, qe, qo);
          p0 = _mm256_fmadd_ps(qe, _mm256_loadu_ps(xs + i), p0);
          p1 = _mm256_fmadd_ps(qo, _mm256_loadu_ps(xs + i + 8), p1);
        }
      } else {
        int64_t i = i0;
        for (; i + 16 <= i1; i += 16) {
          p0 = _mm256_fmadd_ps(dec8_avx2(row + i), _mm256_loadu_ps(xs + i), p0);
          p1 = _mm256_fmadd_ps(dec8_avx2(row + i + 8), _mm256_loadu_ps(xs + i + 8), p1);
        }
        if (i < i1) p0 = _mm256_fmadd_ps(dec8_avx2(row + i), _mm256_loadu_ps(xs + i), p0);
      }
      acc = _mm256_fmadd_ps(_mm256_add_ps(p0, p1), _mm256_set1_ps(s[g]), acc);
      corr += s[g] * z[g] * gsum[g];
    }
    const float v = hsum(acc) - corr;
    y[o] = bias ? v + bias[o] : v;
  }
}

// Multi-row register tile: one output at a time against R rows of (split) x; each chunk of
// weights is decoded to its exact values once and feeds R accumulators.
template <int B, int R>
SLLM_INTQ_AVX2 void gemm_tile_avx2(const IntQView& w, const float* xs, const float* bias, float* y,
                                   int64_t o0, int64_t o1) {
  const int64_t G = w.groups(), in = w.in;
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = row_of(w, o);
    __m256 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
      const __m256 sv = _mm256_set1_ps(w.scales[o * G + g]);
      const __m256 zv = _mm256_set1_ps(w.zeros[o * G + g]);
      if constexpr (B == 4) {
        for (int64_t i = i0; i < i1; i += 16) {
          __m256 qe, qo;
          dec4_avx2(row + i / 2, qe, qo);
          const __m256 we = _mm256_mul_ps(_mm256_sub_ps(qe, zv), sv);
          const __m256 wo = _mm256_mul_ps(_mm256_sub_ps(qo, zv), sv);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            acc[r] = _mm256_fmadd_ps(we, _mm256_loadu_ps(xs + r * in + i), acc[r]);
            acc[r] = _mm256_fmadd_ps(wo, _mm256_loadu_ps(xs + r * in + i + 8), acc[r]);
          }
        }
      } else {
        for (int64_t i = i0; i < i1; i += 8) {
          const __m256 wv = _mm256_mul_ps(_mm256_sub_ps(dec8_avx2(row + i), zv), sv);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r)
            acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs + r * in + i), acc[r]);
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float v = hsum(acc[r]);
      y[r * w.out + o] = bias ? v + bias[o] : v;
    }
  }
}

constexpr int kAvx2Rows = 8;

template <int B>
SLLM_INTQ_AVX2 void gemm_avx2(const IntQView& w, int nr, const float* xs, const float* bias,
                              float* y, int64_t o0, int64_t o1) {
  using Fn = void (*)(const IntQView&, const float*, const float*, float*, int64_t, int64_t);
  static constexpr Fn kTiles[kAvx2Rows] = {
      gemm_tile_avx2<B, 1>, gemm_tile_avx2<B, 2>, gemm_tile_avx2<B, 3>, gemm_tile_avx2<B, 4>,
      gemm_tile_avx2<B, 5>, gemm_tile_avx2<B, 6>, gemm_tile_avx2<B, 7>, gemm_tile_avx2<B, 8>};
  kTiles[nr - 1](w, xs, bias, y, o0, o1);
}

// int8 x int8 -> int32 for R rows: weights and x sign-extended to int16, pairwise
// multiply-add (exact: |products| <= 2^14, pair sums fit int16 x int16 -> int32).
template <int R>
SLLM_INTQ_AVX2 void int8_tile_avx2(const int8_t* w, const float* scb, int64_t out, int64_t in,
                                   const int16_t* x16, const int8_t* qx, const float* sx,
                                   const float* bias, float* y, int64_t o0, int64_t o1) {
  const int64_t full = in & ~int64_t{15};
  for (int64_t o = o0; o < o1; ++o) {
    const int8_t* wr = w + o * in;
    __m256i acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
    for (int64_t i = 0; i < full; i += 16) {
      const __m256i wv =
          _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + i)));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        acc[r] = _mm256_add_epi32(
            acc[r], _mm256_madd_epi16(wv, _mm256_loadu_si256(
                                              reinterpret_cast<const __m256i*>(x16 + r * in + i))));
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t a = hsum_epi32(acc[r]);
      for (int64_t i = full; i < in; ++i) a += int32_t{wr[i]} * int32_t{qx[r * in + i]};
      const float v = static_cast<float>(a) * (sx[r] * scb[o]) * kInt8Dequant;
      y[r * out + o] = bias ? v + bias[o] : v;
    }
  }
}

SLLM_INTQ_AVX2 void quantize_row_avx2(const float* x, int64_t in, float inv, int8_t* q) {
  const __m256 iv = _mm256_set1_ps(inv);
  int64_t i = 0;
  for (; i + 8 <= in; i += 8) {
    // cvtps rounds to nearest even (the default MXCSR mode), as std::nearbyint; |values| <= 127
    // except in outlier columns, which are zeroed afterwards (packs saturates them meanwhile)
    const __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
    const __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(h, h));
  }
  for (; i < in; ++i) q[i] = round_int8(x[i] * inv);
}

// Row absmax over the elements below the threshold, as row_absmax (max is exact: same result).
SLLM_INTQ_AVX2 float row_absmax_avx2(const float* x, int64_t in, float threshold) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256 tv = _mm256_set1_ps(threshold);
  __m256 m = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= in; i += 8) {
    __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
    if (threshold > 0.f) a = _mm256_and_ps(a, _mm256_cmp_ps(a, tv, _CMP_LT_OQ));
    m = _mm256_max_ps(m, a);
  }
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  h = _mm_max_ss(h, _mm_movehdup_ps(h));
  return std::max(_mm_cvtss_f32(h), row_absmax(x + i, in - i, threshold));
}

// m[j] = max(m[j], |x[j]|).
SLLM_INTQ_AVX2 void column_absmax_avx2(const float* x, int64_t in, float* m) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  int64_t j = 0;
  for (; j + 8 <= in; j += 8)
    _mm256_storeu_ps(m + j, _mm256_max_ps(_mm256_loadu_ps(m + j),
                                          _mm256_and_ps(_mm256_loadu_ps(x + j), abs_mask)));
  for (; j < in; ++j) m[j] = std::max(m[j], std::fabs(x[j]));
}

// ---- AVX-512 F + BW ----

#define SLLM_INTQ_AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma")))
// GCC 12 warns on the deliberately undefined pass-through operands inside its own AVX-512
// intrinsics when they are inlined into target("avx512f") functions.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// (k - zero) * scale for k = 0..15: a group's dequantized values, indexed by the nibble.
SLLM_INTQ_AVX512 inline __m512 group_lut(float s, float z) {
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(z)), _mm512_set1_ps(s));
}

// 32 weights from 16 bytes through the group's table: even elements (low nibbles; the permute
// reads only the low 4 bits of each index) and odd elements.
SLLM_INTQ_AVX512 inline void dec4_avx512(const uint8_t* p, __m512 lut, __m512& we, __m512& wo) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  we = _mm512_permutexvar_ps(b, lut);
  wo = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), lut);
}

// 16 weights from 16 bytes.
SLLM_INTQ_AVX512 inline __m512 dec8_avx512(const uint8_t* p) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

template <int B>
SLLM_INTQ_AVX512 void dequant_avx512(const IntQView& w, const int64_t* perm, int64_t o0, int64_t o1,
                                     float* out) {
  float* buf = perm ? row_buffer(w.in) : nullptr;
  const int64_t G = w.groups();
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = row_of(w, o);
    float* dst = perm ? buf : out + o * w.in;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
      const float s = w.scales[o * G + g], z = w.zeros[o * G + g];
      if constexpr (B == 4) {
        const __m512 lut = group_lut(s, z);
        for (int64_t i = i0; i < i1; i += 32) {
          __m512 we, wo;
          dec4_avx512(row + i / 2, lut, we, wo);
          _mm512_storeu_ps(dst + i, _mm512_permutex2var_ps(we, lo_idx, wo));
          _mm512_storeu_ps(dst + i + 16, _mm512_permutex2var_ps(we, hi_idx, wo));
        }
      } else {
        const __m512 sv = _mm512_set1_ps(s), zv = _mm512_set1_ps(z);
        for (int64_t i = i0; i < i1; i += 16)
          _mm512_storeu_ps(dst + i, _mm512_mul_ps(_mm512_sub_ps(dec8_avx512(row + i), zv), sv));
      }
    }
    if (perm) scatter_row(buf, perm, w.in, out + o * w.in);
  }
}

// Storage 4: the exact dequantized weights from the group's table times split x (chunks of 32),
// four accumulators.
SLLM_INTQ_AVX512 void gemv4_avx512(const IntQView& w, const float* xs, const float* bias, float* y,
                                   int64_t o0, int64_t o1) {
  const int64_t G = w.groups();
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = row_of(w, o);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
      const __m512 lut = group_lut(w.scales[o * G + g], w.zeros[o * G + g]);
      int64_t i = i0;
      for (; i + 64 <= i1; i += 64) {
        __m512 we, wo, we2, wo2;
        dec4_avx512(row + i / 2, lut, we, wo);
        dec4_avx512(row + i / 2 + 16, lut, we2, wo2);
        a0 = _mm512_fmadd_ps(we, _mm512_loadu_ps(xs + i), a0);
        a1 = _mm512_fmadd_ps(wo, _mm512_loadu_ps(xs + i + 16), a1);
        a2 = _mm512_fmadd_ps(we2, _mm512_loadu_ps(xs + i + 32), a2);
        a3 = _mm512_fmadd_ps(wo2, _mm512_loadu_ps(xs + i + 48), a3);
      }
      if (i < i1) {
        __m512 we, wo;
        dec4_avx512(row + i / 2, lut, we, wo);
        a0 = _mm512_fmadd_ps(we, _mm512_loadu_ps(xs + i), a0);
        a1 = _mm512_fmadd_ps(wo, _mm512_loadu_ps(xs + i + 16), a1);
      }
    }
    const float v =
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    y[o] = bias ? v + bias[o] : v;
  }
}

// Storage 8: group sums, as gemv_avx2.
SLLM_INTQ_AVX512 void gemv8_avx512(const IntQView& w, const float* x, const float* gsum,
                                   const float* bias, float* y, int64_t o0, int64_t o1) {
  const int64_t G = w.groups();
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = row_of(w, o);
    const float* s = w.scales + o * G;
    const float* z = w.zeros + o * G;
    __m512 acc = _mm512_setzero_ps();
    float corr = 0.f;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
      __m512 p0 = _mm512_setzero_ps(), p1 = _mm512_setzero_ps();
      int64_t i = i0;
      for (; i + 32 <= i1; i += 32) {
        p0 = _mm512_fmadd_ps(dec8_avx512(row + i), _mm512_loadu_ps(x + i), p0);
        p1 = _mm512_fmadd_ps(dec8_avx512(row + i + 16), _mm512_loadu_ps(x + i + 16), p1);
      }
      if (i < i1) p0 = _mm512_fmadd_ps(dec8_avx512(row + i), _mm512_loadu_ps(x + i), p0);
      acc = _mm512_fmadd_ps(_mm512_add_ps(p0, p1), _mm512_set1_ps(s[g]), acc);
      corr += s[g] * z[g] * gsum[g];
    }
    const float v = _mm512_reduce_add_ps(acc) - corr;
    y[o] = bias ? v + bias[o] : v;
  }
}

// Multi-row register tile: O consecutive outputs from o times R rows of x (split for storage 4),
// O * R zmm accumulators; per chunk each output's weights are decoded once to their exact values
// (storage 4 through the group's table) and each x vector is loaded once for all O outputs.
template <int B, int R, int O>
SLLM_INTQ_AVX512 void gemm_tile_avx512(const IntQView& w, const float* xs, const float* bias,
                                       float* y, int64_t o) {
  const int64_t G = w.groups(), in = w.in;
  const uint8_t* rows[O];
  __m512 acc[O][R];
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k) {
    rows[k] = row_of(w, o + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[k][r] = _mm512_setzero_ps();
  }
  for (int64_t g = 0; g < G; ++g) {
    const int64_t i0 = g * w.group_size, i1 = std::min(in, i0 + w.group_size);
    __m512 lut[O], sv[O], zv[O];
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k) {
      const float sg = w.scales[(o + k) * G + g], zg = w.zeros[(o + k) * G + g];
      if constexpr (B == 4)
        lut[k] = group_lut(sg, zg);
      else
        sv[k] = _mm512_set1_ps(sg), zv[k] = _mm512_set1_ps(zg);
      for (int64_t b = i0 * B / 8; b < i1 * B / 8; b += 64)
        _mm_prefetch(reinterpret_cast<const char*>(rows[k] + b) + kPrefetchBytes, _MM_HINT_T0);
    }
    if constexpr (B == 4) {
      for (int64_t i = i0; i < i1; i += 32) {
        __m512 we[O], wo[O];
#pragma GCC unroll 4
        for (int k = 0; k < O; ++k) dec4_avx512(rows[k] + i / 2, lut[k], we[k], wo[k]);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          __m512 xe = _mm512_loadu_ps(xs + r * in + i), xo = _mm512_loadu_ps(xs + r * in + i + 16);
          // one load for all O outputs (GCC would otherwise fold it into each FMA)
          if constexpr (O > 1) __asm__("" : "+v"(xe), "+v"(xo));
#pragma GCC unroll 4
          for (int k = 0; k < O; ++k) {
            acc[k][r] = _mm512_fmadd_ps(we[k], xe, acc[k][r]);
            acc[k][r] = _mm512_fmadd_ps(wo[k], xo, acc[k][r]);
          }
        }
      }
    } else {
      for (int64_t i = i0; i < i1; i += 16) {
        __m512 wv[O];
#pragma GCC unroll 4
        for (int k = 0; k < O; ++k)
          wv[k] = _mm512_mul_ps(_mm512_sub_ps(dec8_avx512(rows[k] + i), zv[k]), sv[k]);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          __m512 xv = _mm512_loadu_ps(xs + r * in + i);
          if constexpr (O > 1) __asm__("" : "+v"(xv));
#pragma GCC unroll 4
          for (int k = 0; k < O; ++k) acc[k][r] = _mm512_fmadd_ps(wv[k], xv, acc[k][r]);
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float v = _mm512_reduce_add_ps(acc[k][r]);
      y[r * w.out + o + k] = bias ? v + bias[o + k] : v;
    }
}

// Multi-row tile for a few rows, storage 8: group sums as gemv8_avx512 (at a few rows, decoding a
// byte to its exact value costs as much as the FMAs it feeds): O outputs from o times R rows of x,
// per group O * R partial sums of q * x scaled once; gsum [R, groups] holds the zero-point terms.
template <int R, int O>
SLLM_INTQ_AVX512 void gemm8_tile_avx512(const IntQView& w, const float* x, const float* gsum,
                                        const float* bias, float* y, int64_t o) {
  const int64_t G = w.groups(), in = w.in;
  const uint8_t* rows[O];
  __m512 acc[O][R];
  float corr[O][R];
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k) {
    rows[k] = row_of(w, o + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[k][r] = _mm512_setzero_ps(), corr[k][r] = 0.f;
  }
  for (int64_t g = 0; g < G; ++g) {
    const int64_t i0 = g * w.group_size, i1 = std::min(in, i0 + w.group_size);
    __m512 p[O][R];
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) p[k][r] = _mm512_setzero_ps();
      for (int64_t b = i0; b < i1; b += 64)
        _mm_prefetch(reinterpret_cast<const char*>(rows[k] + b) + kPrefetchBytes, _MM_HINT_T0);
    }
    for (int64_t i = i0; i < i1; i += 16) {
      __m512 qv[O];
#pragma GCC unroll 4
      for (int k = 0; k < O; ++k) qv[k] = dec8_avx512(rows[k] + i);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        __m512 xv = _mm512_loadu_ps(x + r * in + i);
        if constexpr (O > 1) __asm__("" : "+v"(xv));
#pragma GCC unroll 4
        for (int k = 0; k < O; ++k) p[k][r] = _mm512_fmadd_ps(qv[k], xv, p[k][r]);
      }
    }
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k) {
      const float sg = w.scales[(o + k) * G + g], szg = sg * w.zeros[(o + k) * G + g];
      const __m512 sv = _mm512_set1_ps(sg);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        acc[k][r] = _mm512_fmadd_ps(p[k][r], sv, acc[k][r]);
        corr[k][r] += szg * gsum[r * G + g];
      }
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float v = _mm512_reduce_add_ps(acc[k][r]) - corr[k][r];
      y[r * w.out + o + k] = bias ? v + bias[o + k] : v;
    }
}

// Rows and outputs per register tile; storage 8 takes the group-sum tile for at most
// kAvx512GsumRows rows (more rows amortise the exact decoding, and the group-sum tile holds two
// accumulators per output and row).
constexpr int kAvx512Rows = 8, kAvx512GsumRows = 4, kAvx512Outs = 2;

template <int B, int R>
SLLM_INTQ_AVX512 void gemm_rows_avx512(const IntQView& w, const float* xs, const float* gsum,
                                       const float* bias, float* y, int64_t o0, int64_t o1) {
  int64_t o = o0;
  for (; o + kAvx512Outs <= o1; o += kAvx512Outs)
    gemm_tile_avx512<B, R, kAvx512Outs>(w, xs, bias, y, o);
  for (; o < o1; ++o) gemm_tile_avx512<B, R, 1>(w, xs, bias, y, o);
}

template <int R>
SLLM_INTQ_AVX512 void gemm8_rows_avx512(const IntQView& w, const float* x, const float* gsum,
                                        const float* bias, float* y, int64_t o0, int64_t o1) {
  int64_t o = o0;
  for (; o + kAvx512Outs <= o1; o += kAvx512Outs)
    gemm8_tile_avx512<R, kAvx512Outs>(w, x, gsum, bias, y, o);
  for (; o < o1; ++o) gemm8_tile_avx512<R, 1>(w, x, gsum, bias, y, o);
}

using GemmRowsFn = void (*)(const IntQView&, const float*, const float*, const float*, float*,
                            int64_t, int64_t);

// One tile of nr rows: xs is x (split for storage 4); with gsum (storage 8: the group sums of
// those rows) the group-sum tile, else the exact one.
template <int B>
SLLM_INTQ_AVX512 void gemm_avx512(const IntQView& w, int nr, const float* xs, const float* gsum,
                                  const float* bias, float* y, int64_t o0, int64_t o1) {
  static constexpr GemmRowsFn kExact[kAvx512Rows] = {
      gemm_rows_avx512<B, 1>, gemm_rows_avx512<B, 2>, gemm_rows_avx512<B, 3>,
      gemm_rows_avx512<B, 4>, gemm_rows_avx512<B, 5>, gemm_rows_avx512<B, 6>,
      gemm_rows_avx512<B, 7>, gemm_rows_avx512<B, 8>};
  static constexpr GemmRowsFn kGsum[kAvx512GsumRows] = {gemm8_rows_avx512<1>, gemm8_rows_avx512<2>,
                                                        gemm8_rows_avx512<3>, gemm8_rows_avx512<4>};
  (gsum ? kGsum : kExact)[nr - 1](w, xs, gsum, bias, y, o0, o1);
}

// int8: as int8_tile_avx2 with 32 weights per step.
template <int R>
SLLM_INTQ_AVX512 void int8_tile_avx512(const int8_t* w, const float* scb, int64_t out, int64_t in,
                                       const int16_t* x16, const int8_t* qx, const float* sx,
                                       const float* bias, float* y, int64_t o0, int64_t o1) {
  const int64_t full = in & ~int64_t{31};
  for (int64_t o = o0; o < o1; ++o) {
    const int8_t* wr = w + o * in;
    __m512i acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_si512();
    for (int64_t i = 0; i < full; i += 32) {
      const __m512i wv =
          _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + i)));
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        acc[r] =
            _mm512_add_epi32(acc[r], _mm512_madd_epi16(wv, _mm512_loadu_si512(x16 + r * in + i)));
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t a = _mm512_reduce_add_epi32(acc[r]);
      for (int64_t i = full; i < in; ++i) a += int32_t{wr[i]} * int32_t{qx[r * in + i]};
      const float v = static_cast<float>(a) * (sx[r] * scb[o]) * kInt8Dequant;
      y[r * out + o] = bias ? v + bias[o] : v;
    }
  }
}

#pragma GCC diagnostic pop

constexpr int kInt8Rows = 8;

using Int8TileFn = void (*)(const int8_t*, const float*, int64_t, int64_t, const int16_t*,
                            const int8_t*, const float*, const float*, float*, int64_t, int64_t);

#endif  // SLLM_INTQ_X86

enum class Path { kScalar, kAvx2, kAvx512 };

Path pick(IntQSimd simd) {
  if (simd == IntQSimd::kScalar) return Path::kScalar;
  if (simd != IntQSimd::kAvx2 && intq_has_avx512()) return Path::kAvx512;
  return intq_has_avx2() ? Path::kAvx2 : Path::kScalar;
}

// The widest path not above p whose vectors tile every group: weights per SIMD chunk are 32 / 16
// (storage 4, AVX-512 / AVX2) and 16 / 8 (storage 8).
Path fit(Path p, const IntQView& w) {
  auto tiles = [&](int64_t n) { return w.in % n == 0 && w.group_size % n == 0; };
  const int64_t wide = w.storage_bits == 4 ? 32 : 16;
  if (p == Path::kAvx512 && !tiles(wide)) p = Path::kAvx2;
  if (p == Path::kAvx2 && !tiles(wide / 2)) p = Path::kScalar;
  return p;
}

}  // namespace

bool intq_has_avx2() {
#ifdef SLLM_INTQ_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

bool intq_has_avx512() {
#ifdef SLLM_INTQ_X86
  static const bool ok =
      intq_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return ok;
#else
  return false;
#endif
}

void intq_dequantize_f32(const IntQView& w, const int64_t* perm, int64_t o0, int64_t o1, float* out,
                         IntQSimd simd) {
#ifdef SLLM_INTQ_X86
  const bool b4 = w.storage_bits == 4;
  switch (fit(pick(simd), w)) {
    case Path::kAvx512:
      return b4 ? dequant_avx512<4>(w, perm, o0, o1, out) : dequant_avx512<8>(w, perm, o0, o1, out);
    case Path::kAvx2:
      return b4 ? dequant_avx2<4>(w, perm, o0, o1, out) : dequant_avx2<8>(w, perm, o0, o1, out);
    case Path::kScalar:
      break;
  }
#endif
  dequant_scalar(w, perm, o0, o1, out);
}

void intq_gemv_f32(const IntQView& w, const float* x, const float* bias, float* y, int64_t o0,
                   int64_t o1, IntQSimd simd) {
  if (o0 >= o1) return;
#ifdef SLLM_INTQ_X86
  const bool b4 = w.storage_bits == 4;
  switch (fit(pick(simd), w)) {
    case Path::kAvx512:
      if (b4) return gemv4_avx512(w, split_x(x, w.in, 32), bias, y, o0, o1);
      return gemv8_avx512(w, x, group_sums(w, x), bias, y, o0, o1);
    case Path::kAvx2:
      if (b4) return gemv_avx2<4>(w, split_x(x, w.in, 16), group_sums(w, x), bias, y, o0, o1);
      return gemv_avx2<8>(w, x, group_sums(w, x), bias, y, o0, o1);
    case Path::kScalar:
      break;
  }
#endif
  gemm_scalar(w, 1, x, bias, y, o0, o1);
}

void intq_gemm_small_f32(const IntQView& w, int64_t rows, const float* x, const float* bias,
                         float* y, int64_t o0, int64_t o1, IntQSimd simd) {
  if (rows <= 0 || o0 >= o1) return;
#ifdef SLLM_INTQ_X86
  const bool b4 = w.storage_bits == 4;
  switch (fit(pick(simd), w)) {
    case Path::kAvx512: {
      const float* xs = b4 ? split_x(x, rows * w.in, 32) : x;
      const bool gsum = !b4 && rows <= kAvx512GsumRows;
      const float* gs = gsum ? group_sums(w, x, rows) : nullptr;
      const int64_t tile = gsum ? kAvx512GsumRows : kAvx512Rows;
      for (int64_t r = 0; r < rows; r += tile) {
        const int nr = static_cast<int>(std::min<int64_t>(tile, rows - r));
        const float* gr = gs ? gs + r * w.groups() : nullptr;
        if (b4)
          gemm_avx512<4>(w, nr, xs + r * w.in, gr, bias, y + r * w.out, o0, o1);
        else
          gemm_avx512<8>(w, nr, xs + r * w.in, gr, bias, y + r * w.out, o0, o1);
      }
      return;
    }
    case Path::kAvx2: {
      const float* xs = b4 ? split_x(x, rows * w.in, 16) : x;
      for (int64_t r = 0; r < rows; r += kAvx2Rows) {
        const int nr = static_cast<int>(std::min<int64_t>(kAvx2Rows, rows - r));
        if (b4)
          gemm_avx2<4>(w, nr, xs + r * w.in, bias, y + r * w.out, o0, o1);
        else
          gemm_avx2<8>(w, nr, xs + r * w.in, bias, y + r * w.out, o0, o1);
      }
      return;
    }
    case Path::kScalar:
      break;
  }
#endif
  gemm_scalar(w, rows, x, bias, y, o0, o1);
}

int64_t int8_outlier_columns(const float* x, int64_t rows, int64_t in, float threshold,
                             int64_t* idx) {
  std::vector<float> m(static_cast<size_t>(in), 0.f);
  for (int64_t r = 0; r < rows; ++r) {
#ifdef SLLM_INTQ_X86
    if (intq_has_avx2()) {
      column_absmax_avx2(x + r * in, in, m.data());
      continue;
    }
#endif
    for (int64_t j = 0; j < in; ++j) m[j] = std::max(m[j], std::fabs(x[r * in + j]));
  }
  int64_t n = 0;
  for (int64_t j = 0; j < in; ++j)
    if (m[j] >= threshold) idx[n++] = j;
  return n;
}

void int8_quantize_rows(const float* x, int64_t in, float threshold, const int64_t* outlier_idx,
                        int64_t n_outliers, int8_t* q, float* sx, int64_t r0, int64_t r1,
                        IntQSimd simd) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * in;
    int8_t* qr = q + r * in;
#ifdef SLLM_INTQ_X86
    const bool simd_ok = pick(simd) != Path::kScalar;
    const float m = simd_ok ? row_absmax_avx2(xr, in, threshold) : row_absmax(xr, in, threshold);
#else
    const float m = row_absmax(xr, in, threshold);
#endif
    sx[r] = m;
    if (m == 0.f) {
      std::memset(qr, 0, static_cast<size_t>(in));
      continue;
    }
    const float inv = 127.f / m;
#ifdef SLLM_INTQ_X86
    if (simd_ok)
      quantize_row_avx2(xr, in, inv, qr);
    else
#endif
      quantize_row_scalar(xr, in, inv, qr);
    for (int64_t k = 0; k < n_outliers; ++k) qr[outlier_idx[k]] = 0;
  }
}

void int8_gemm_small(const int8_t* w, const float* scb, int64_t out, int64_t in, int64_t rows,
                     const int8_t* qx, const float* sx, const float* bias, float* y, int64_t o0,
                     int64_t o1, IntQSimd simd) {
  if (rows <= 0 || o0 >= o1) return;
#ifdef SLLM_INTQ_X86
  const Path p = pick(simd);
  if (p != Path::kScalar) {
    thread_local std::vector<int16_t> x16;
    x16.resize(static_cast<size_t>(rows * in));
    for (int64_t i = 0; i < rows * in; ++i) x16[i] = qx[i];
    static constexpr Int8TileFn k2[kInt8Rows] = {
        int8_tile_avx2<1>, int8_tile_avx2<2>, int8_tile_avx2<3>, int8_tile_avx2<4>,
        int8_tile_avx2<5>, int8_tile_avx2<6>, int8_tile_avx2<7>, int8_tile_avx2<8>};
    static constexpr Int8TileFn k512[kInt8Rows] = {
        int8_tile_avx512<1>, int8_tile_avx512<2>, int8_tile_avx512<3>, int8_tile_avx512<4>,
        int8_tile_avx512<5>, int8_tile_avx512<6>, int8_tile_avx512<7>, int8_tile_avx512<8>};
    const Int8TileFn* tiles = p == Path::kAvx512 ? k512 : k2;
    for (int64_t r = 0; r < rows; r += kInt8Rows) {
      const int nr = static_cast<int>(std::min<int64_t>(kInt8Rows, rows - r));
      tiles[nr - 1](w, scb, out, in, x16.data() + r * in, qx + r * in, sx + r, bias, y + r * out,
                    o0, o1);
    }
    return;
  }
#endif
  int8_gemm_scalar(w, scb, out, in, rows, qx, sx, bias, y, o0, o1);
}

void int8_dequantize_acc(const int32_t* acc, int64_t out, const float* sx, const float* scb,
                         const float* bias, float* y, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t o = 0; o < out; ++o) {
      const float v = static_cast<float>(acc[r * out + o]) * (sx[r] * scb[o]) * kInt8Dequant;
      y[r * out + o] = bias ? v + bias[o] : v;
    }
}

void int8_outlier_add(const int8_t* w, const float* scb, int64_t out, int64_t in, int64_t rows,
                      const float* x, const int64_t* idx, int64_t n_idx, float* y, int64_t o0,
                      int64_t o1) {
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t k = 0; k < n_idx; ++k) {
      const int64_t j = idx[k];
      const float wv = static_cast<float>(w[o * in + j]) * scb[o] / 127.f;
      for (int64_t r = 0; r < rows; ++r) y[r * out + o] += x[r * in + j] * wv;
    }
}

}  // namespace sllm::kernels::cpu
