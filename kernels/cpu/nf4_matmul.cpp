#include "kernels/cpu/nf4_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
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

// The f32 dequantizers below write element i of [e0, e1) to out[i - e0] (the public entry point
// passes its element-0 pointer + e0), so the GEMM can decode one weight row into a small buffer.

// How far ahead in the packed weight stream the multi-row GEMM prefetches (SIMD paths).
constexpr int64_t kPrefetchBytes = 2048;

// ---- scalar ----

void dequant_f32_scalar(const uint8_t* packed, const float* absmax, const float* code,
                        int64_t blocksize, int64_t e0, int64_t e1, float* out) {
  for_each_block_segment(e0, e1, blocksize, [&](int64_t blk, int64_t s, int64_t e) {
    const float a = absmax[blk];
    for (int64_t i = s; i < e; ++i) out[i - e0] = code[nibble(packed, i)] * a;
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

// y[r, o] = W[o, :] . x[r, :] (+ bias[o]) for rows [0, rows) of x (row stride in) and outputs
// [o0, o1); y has row stride out. Each weight row is dequantized once into a row buffer (the
// exact dequantized values) and dotted with every row of x; the dot keeps 8 partial sums so the
// compiler can vectorise it without reassociating.
void gemm_scalar(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                 int64_t out, int64_t in, int64_t rows, const float* x, const float* bias, float* y,
                 int64_t o0, int64_t o1) {
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(in));
  float* wr = buf.data();
  const int64_t full = in & ~int64_t{7};
  for (int64_t o = o0; o < o1; ++o) {
    dequant_f32_scalar(packed, absmax, code, blocksize, o * in, o * in + in, wr);
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * in;
      float part[8] = {};
      for (int64_t i = 0; i < full; i += 8)
        for (int j = 0; j < 8; ++j) part[j] += wr[i + j] * xr[i + j];
      float v =
          ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
      for (int64_t i = full; i < in; ++i) v += wr[i] * xr[i];
      y[r * out + o] = bias ? v + bias[o] : v;
    }
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
      out[i - e0] = code[nibble(packed, i)] * a;
      ++i;
    }
    for (; i + 8 <= e; i += 8)
      _mm256_storeu_ps(out + (i - e0), _mm256_mul_ps(lookup8(lut, unpack8(packed + (i >> 1))), av));
    for (; i < e; ++i) out[i - e0] = code[nibble(packed, i)] * a;
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

// lookup8 on these gives code[q] * a directly: the same fp32 product as dequantization, one
// multiply per block instead of one per 8 weights.
SLLM_AVX2 inline Lut scale_lut(const Lut& lut, float a) {
  const __m256 av = _mm256_set1_ps(a);
  return {_mm256_mul_ps(lut.lo, av), _mm256_mul_ps(lut.hi, av)};
}

// Multi-row GEMM for in % 8 == 0 and blocksize % 8 == 0 (every 8 weights of a row sit in one
// block and start on a byte): R rows of x (row stride in) against outputs [o0, o1), y row stride
// out. Each group of 8 weights is decoded once into a register and feeds R accumulators.
template <int R>
SLLM_AVX2 void gemm_tile_avx2(const uint8_t* packed, const float* absmax, const float* code,
                              int64_t blocksize, int64_t out, int64_t in, const float* x,
                              const float* bias, float* y, int64_t o0, int64_t o1) {
  const Lut lut = make_lut(code);
  for (int64_t o = o0; o < o1; ++o) {
    const int64_t r0 = o * in;
    const int64_t r1 = r0 + in;
    __m256 acc[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t s = r0, blk = r0 / blocksize; s < r1; ++blk) {
      const int64_t e = std::min(r1, (blk + 1) * blocksize);
      _mm_prefetch(reinterpret_cast<const char*>(packed + (s >> 1)) + kPrefetchBytes, _MM_HINT_T0);
      const Lut sl = scale_lut(lut, absmax[blk]);
      for (int64_t i = s; i < e; i += 8) {
        const __m256 wv = lookup8(sl, unpack8(packed + (i >> 1)));
        const float* xi = x + (i - r0);
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r)
          acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xi + r * in), acc[r]);
      }
      s = e;
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float v = hsum(acc[r]);
      y[r * out + o] = bias ? v + bias[o] : v;
    }
  }
}

// Any shape: each weight row is dequantized once into a row buffer, then dotted with every row.
SLLM_AVX2 void gemm_rowbuf_avx2(const uint8_t* packed, const float* absmax, const float* code,
                                int64_t blocksize, int64_t out, int64_t in, int nr, const float* x,
                                const float* bias, float* y, int64_t o0, int64_t o1) {
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(in));
  float* wr = buf.data();
  for (int64_t o = o0; o < o1; ++o) {
    dequant_f32_avx2(packed, absmax, code, blocksize, o * in, o * in + in, wr);
    for (int r = 0; r < nr; ++r) {
      const float* xr = x + r * in;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      int64_t i = 0;
      for (; i + 16 <= in; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(xr + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i + 8), _mm256_loadu_ps(xr + i + 8), a1);
      }
      if (i + 8 <= in) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(wr + i), _mm256_loadu_ps(xr + i), a0);
        i += 8;
      }
      float v = hsum(_mm256_add_ps(a0, a1));
      for (; i < in; ++i) v += wr[i] * xr[i];
      y[r * out + o] = bias ? v + bias[o] : v;
    }
  }
}

constexpr int kAvx2Tile = 8;

SLLM_AVX2 void gemm_avx2(const uint8_t* packed, const float* absmax, const float* code,
                         int64_t blocksize, int64_t out, int64_t in, int nr, const float* x,
                         const float* bias, float* y, int64_t o0, int64_t o1) {
  if (in % 8 != 0 || blocksize % 8 != 0)
    return gemm_rowbuf_avx2(packed, absmax, code, blocksize, out, in, nr, x, bias, y, o0, o1);
  using Fn = void (*)(const uint8_t*, const float*, const float*, int64_t, int64_t, int64_t,
                      const float*, const float*, float*, int64_t, int64_t);
  static constexpr Fn kTiles[kAvx2Tile] = {gemm_tile_avx2<1>, gemm_tile_avx2<2>, gemm_tile_avx2<3>,
                                           gemm_tile_avx2<4>, gemm_tile_avx2<5>, gemm_tile_avx2<6>,
                                           gemm_tile_avx2<7>, gemm_tile_avx2<8>};
  kTiles[nr - 1](packed, absmax, code, blocksize, out, in, x, bias, y, o0, o1);
}

// ---- AVX-512F ----

#define SLLM_AVX512 __attribute__((target("avx512f,avx2,fma")))
// GCC 12 warns on the deliberately undefined pass-through operand inside its own AVX-512
// intrinsics (_mm512_undefined_epi32, the __Y of _mm512_reduce_add_ps) when they are inlined
// into target("avx512f") functions.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

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
      out[i - e0] = code[nibble(packed, i)] * a;
      ++i;
    }
    for (; i + 16 <= e; i += 16)
      _mm512_storeu_ps(out + (i - e0),
                       _mm512_mul_ps(_mm512_permutexvar_ps(unpack16(packed + (i >> 1)), lut), av));
    for (; i < e; ++i) out[i - e0] = code[nibble(packed, i)] * a;
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

// Every row of x [rows, in] in gemv_avx512_grouped's lane order (in % 16 == 0).
const float* group_x_rows(const float* x, int64_t in, int64_t rows) {
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(in * rows));
  for (int64_t g = 0; g < in * rows; g += 16)
    for (int m = 0; m < 8; ++m) {
      buf[g + 2 * m] = x[g + m];
      buf[g + 2 * m + 1] = x[g + 8 + m];
    }
  return buf.data();
}

// Multi-row GEMM register tile for in % 16 == 0 and blocksize % 16 == 0: O consecutive outputs
// from o times R rows of grouped x (xg, row stride in), O * R zmm accumulators. Per group of 16
// columns each output's weights are decoded once (group16 on the code table pre-scaled by the
// block's absmax: code[q] * a, as dequantization) and each x vector is loaded once for all O.
template <int R, int O>
SLLM_AVX512 void gemm_tile_avx512(const uint8_t* packed, const float* absmax, const float* code,
                                  int64_t blocksize, int64_t out, int64_t in, const float* xg,
                                  const float* bias, float* y, int64_t o) {
  const __m512 lut = _mm512_loadu_ps(code);
  const __m512i shifts =
      _mm512_setr_epi32(4, 4, 0, 0, 12, 12, 8, 8, 20, 20, 16, 16, 28, 28, 24, 24);
  __m512 acc[O][R];
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[k][r] = _mm512_setzero_ps();
  // Per output: its current block and the column where the next one starts (boundaries fall on
  // groups of 16 since in and blocksize are multiples of 16).
  int64_t blk[O], next[O];
  __m512 sl[O];
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k) {
    blk[k] = (o + k) * in / blocksize;
    next[k] = (blk[k] + 1) * blocksize - (o + k) * in;
    sl[k] = _mm512_mul_ps(lut, _mm512_set1_ps(absmax[blk[k]]));
  }
  for (int64_t i = 0; i < in;) {
    int64_t e = in;
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k) {
      e = std::min(e, next[k]);
      // The O rows are read interleaved, which the hardware prefetcher follows poorly when the
      // weights come from L3 / DRAM (few rows: too little work per byte to hide it).
      _mm_prefetch(
          reinterpret_cast<const char*>(packed + (((o + k) * in + i) >> 1)) + kPrefetchBytes,
          _MM_HINT_T0);
    }
    for (; i < e; i += 16) {
      __m512 wv[O];
#pragma GCC unroll 4
      for (int k = 0; k < O; ++k)
        wv[k] = group16(packed + (((o + k) * in + i) >> 1), shifts, sl[k]);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        __m512 xv = _mm512_loadu_ps(xg + r * in + i);
        // one load for all O outputs (GCC would otherwise fold it into each FMA: O loads)
        if constexpr (O > 1) __asm__("" : "+v"(xv));
#pragma GCC unroll 4
        for (int k = 0; k < O; ++k) acc[k][r] = _mm512_fmadd_ps(wv[k], xv, acc[k][r]);
      }
    }
    if (i >= in) break;
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k)
      if (next[k] == i) {
        ++blk[k];
        next[k] += blocksize;
        sl[k] = _mm512_mul_ps(lut, _mm512_set1_ps(absmax[blk[k]]));
      }
  }
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float v = _mm512_reduce_add_ps(acc[k][r]);
      y[r * out + o + k] = bias ? v + bias[o + k] : v;
    }
}

constexpr int kAvx512Outs = 2;  // outputs per register tile

// R rows of grouped x against outputs [o0, o1): tiles of kAvx512Outs outputs, then single ones.
template <int R>
SLLM_AVX512 void gemm_rows_avx512(const uint8_t* packed, const float* absmax, const float* code,
                                  int64_t blocksize, int64_t out, int64_t in, const float* xg,
                                  const float* bias, float* y, int64_t o0, int64_t o1) {
  int64_t o = o0;
  for (; o + kAvx512Outs <= o1; o += kAvx512Outs)
    gemm_tile_avx512<R, kAvx512Outs>(packed, absmax, code, blocksize, out, in, xg, bias, y, o);
  for (; o < o1; ++o)
    gemm_tile_avx512<R, 1>(packed, absmax, code, blocksize, out, in, xg, bias, y, o);
}

// Any shape: each weight row is dequantized once into a row buffer, then dotted with every row
// (masked loads for the last in % 16 columns).
SLLM_AVX512 void gemm_rowbuf_avx512(const uint8_t* packed, const float* absmax, const float* code,
                                    int64_t blocksize, int64_t out, int64_t in, int nr,
                                    const float* x, const float* bias, float* y, int64_t o0,
                                    int64_t o1) {
  thread_local std::vector<float> buf;
  buf.resize(static_cast<size_t>(in));
  float* wr = buf.data();
  const int64_t full = in & ~int64_t{15};
  const __mmask16 tail = static_cast<__mmask16>((1u << (in - full)) - 1u);
  for (int64_t o = o0; o < o1; ++o) {
    dequant_f32_avx512(packed, absmax, code, blocksize, o * in, o * in + in, wr);
    for (int r = 0; r < nr; ++r) {
      const float* xr = x + r * in;
      __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
      int64_t i = 0;
      for (; i + 32 <= full; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(wr + i), _mm512_loadu_ps(xr + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(wr + i + 16), _mm512_loadu_ps(xr + i + 16), a1);
      }
      if (i < full) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(wr + i), _mm512_loadu_ps(xr + i), a0);
        i += 16;
      }
      if (tail)
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, wr + i),
                             _mm512_maskz_loadu_ps(tail, xr + i), a1);
      const float v = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
      y[r * out + o] = bias ? v + bias[o] : v;
    }
  }
}

constexpr int kAvx512Tile = 8;

// One tile of nr <= kAvx512Tile rows; xg is x grouped (group_x_rows) when the shape takes the
// register-tiled path, else x itself.
SLLM_AVX512 void gemm_avx512(const uint8_t* packed, const float* absmax, const float* code,
                             int64_t blocksize, int64_t out, int64_t in, int nr, const float* x,
                             const float* bias, float* y, int64_t o0, int64_t o1) {
  if (in % 16 != 0 || blocksize % 16 != 0)
    return gemm_rowbuf_avx512(packed, absmax, code, blocksize, out, in, nr, x, bias, y, o0, o1);
  using Fn = void (*)(const uint8_t*, const float*, const float*, int64_t, int64_t, int64_t,
                      const float*, const float*, float*, int64_t, int64_t);
  static constexpr Fn kTiles[] = {gemm_rows_avx512<1>, gemm_rows_avx512<2>, gemm_rows_avx512<3>,
                                  gemm_rows_avx512<4>, gemm_rows_avx512<5>, gemm_rows_avx512<6>,
                                  gemm_rows_avx512<7>, gemm_rows_avx512<8>};
  static_assert(kAvx512Tile == static_cast<int>(std::size(kTiles)));
  kTiles[nr - 1](packed, absmax, code, blocksize, out, in, x, bias, y, o0, o1);
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
      return dequant_f32_avx512(packed, absmax, code, blocksize, e0, e1, out + e0);
    case Path::kAvx2:
      return dequant_f32_avx2(packed, absmax, code, blocksize, e0, e1, out + e0);
    case Path::kScalar:
      break;
  }
#endif
  dequant_f32_scalar(packed, absmax, code, blocksize, e0, e1, out + e0);
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

void nf4_gemm_small_f32(const uint8_t* packed, const float* absmax, const float* code,
                        int64_t blocksize, int64_t out, int64_t in, int64_t rows, const float* x,
                        const float* bias, float* y, int64_t o0, int64_t o1, Nf4Simd simd) {
  if (rows <= 0 || o0 >= o1) return;
#ifdef SLLM_NF4_X86
  switch (pick(simd)) {
    case Path::kAvx512: {
      const bool grouped = in % 16 == 0 && blocksize % 16 == 0;
      const float* xs = grouped ? group_x_rows(x, in, rows) : x;
      for (int64_t r = 0; r < rows; r += kAvx512Tile)
        gemm_avx512(packed, absmax, code, blocksize, out, in,
                    static_cast<int>(std::min<int64_t>(kAvx512Tile, rows - r)), xs + r * in, bias,
                    y + r * out, o0, o1);
      return;
    }
    case Path::kAvx2:
      for (int64_t r = 0; r < rows; r += kAvx2Tile)
        gemm_avx2(packed, absmax, code, blocksize, out, in,
                  static_cast<int>(std::min<int64_t>(kAvx2Tile, rows - r)), x + r * in, bias,
                  y + r * out, o0, o1);
      return;
    case Path::kScalar:
      break;
  }
#endif
  gemm_scalar(packed, absmax, code, blocksize, out, in, rows, x, bias, y, o0, o1);
}

}  // namespace sllm::kernels::cpu
