// A small vector abstraction for the CPU kernels: Vec<Isa::scalar> (one float), Vec<Isa::avx2>
// (8 floats, AVX2 + FMA) and Vec<Isa::avx512> (16 floats, AVX-512 F + BW). The kernel bodies
// (*_body.h) are written once against Vec<I>; each ISA gets its own translation unit
// (isa_scalar.cpp, isa_avx2.cpp, isa_avx512.cpp) that enables the instruction set with
// `#pragma GCC target` before including the bodies, so the binary keeps run-time dispatch and
// runs on a CPU without AVX-512 (or AVX2).
//
// Besides load / store / arithmetic / reductions, each Vec has the format helpers the kernels
// need (NF4 code lookup, int4 / int8 unpacking, int16 multiply-add). Where an ISA has a faster
// instruction for a step (AVX-512 permutes for the 16-entry NF4 and int4 tables, masked loads),
// it lives here as that Vec's version of the helper. Traits (kAccs, kTiles, kOuts, kGroupedX,
// ...) tell the bodies which of the shared loop shapes an ISA runs; every choice keeps the
// results each ISA produced before bodies were shared (same operations in the same order).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#define SLLM_CPU_X86 1
#include <immintrin.h>
#endif

#define SLLM_VEC_INLINE __attribute__((always_inline)) inline

namespace sllm::kernels::cpu {

enum class Isa { scalar, avx2, avx512 };

template <Isa I>
struct Vec;

// NF4: packed byte b holds element 2b in its HIGH nibble and 2b + 1 in its low nibble.
inline int nf4_nibble(const uint8_t* packed, int64_t i) {
  const uint8_t b = packed[i >> 1];
  return (i & 1) ? (b & 0x0F) : (b >> 4);
}

// fp32 -> bf16 bits, round to nearest even, NaN -> quiet NaN (as c10::BFloat16).
inline uint16_t bf16_bits(float v) {
  if (std::isnan(v)) return 0x7FC0;
  uint32_t u;
  std::memcpy(&u, &v, 4);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// Values beyond int8 occur only in LLM.int8() outlier columns (zeroed afterwards); the clamp keeps
// the conversion defined.
inline int8_t round_int8(float v) {
  return static_cast<int8_t>(std::clamp(std::nearbyint(v), -128.f, 127.f));
}

// ---- scalar: one lane; fma is a multiply then an add (no FMA instruction on the baseline) ----

template <>
struct Vec<Isa::scalar> {
  using F = float;
  using I32 = int32_t;
  static constexpr int kWidth = 1;       // floats per vector
  static constexpr int kI16Width = 1;    // int16 lanes of the int8 multiply-add
  static constexpr int kAccs = 1;        // independent accumulators in the unrolled dot loops
  static constexpr bool kTiles = false;  // multi-row GEMM: row buffer + dot, no register tiles
  static constexpr int kOuts = 1;
  static constexpr bool kGroupedX = false;
  static constexpr int kGsumTileRows = 0;
  static constexpr bool kInt4ExactGemv = false;

  static F zero() { return 0.f; }
  static F set1(float v) { return v; }
  static F load(const float* p) { return *p; }
  static void store(float* p, F v) { *p = v; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F fma(F a, F b, F c) { return a * b + c; }
  static float reduce_add(F v) { return v; }
  static F abs(F v) { return std::fabs(v); }
  static F max(F a, F b) { return std::max(a, b); }
  static float reduce_max(F v) { return v; }
  static F keep_lt(F a, F t) { return a < t ? a : 0.f; }  // a where a < t, else 0
  static void prefetch(const void*) {}

  // Dot product with 8 partial sums, so the compiler can vectorise it without reassociating.
  static float dot(const float* a, const float* b, int64_t n) {
    float part[8] = {};
    const int64_t full = n & ~int64_t{7};
    for (int64_t i = 0; i < full; i += 8)
      for (int j = 0; j < 8; ++j) part[j] += a[i + j] * b[i + j];
    float v =
        ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
    for (int64_t i = full; i < n; ++i) v += a[i] * b[i];
    return v;
  }

  // NF4: the code of element i.
  using Nf4Lut = const float*;
  static Nf4Lut nf4_lut(const float* code) { return code; }
  static F nf4_codes(Nf4Lut lut, const uint8_t* packed, int64_t i) {
    return lut[nf4_nibble(packed, i)];
  }
  static void store_bf16(uint16_t* p, F v) { *p = bf16_bits(v); }

  // int4 (low nibble = even element): (q - zero) * scale of the two elements of byte p.
  struct Int4Lut {
    float s, z;
  };
  static Int4Lut int4_lut(float s, float z) { return {s, z}; }
  static void int4_decode(const uint8_t* p, const Int4Lut& l, F& we, F& wo) {
    we = (static_cast<float>(*p & 0x0F) - l.z) * l.s;
    wo = (static_cast<float>(*p >> 4) - l.z) * l.s;
  }
  static void store_interleaved(float* p, F even, F odd) { p[0] = even, p[1] = odd; }
  static F u8_to_f(const uint8_t* p) { return static_cast<float>(*p); }

  // int8 x int8 -> int32.
  static I32 zero_i32() { return 0; }
  static I32 load_i8_i16(const int8_t* p) { return *p; }
  static I32 load_i16(const int16_t* p) { return *p; }
  static I32 madd_i16(I32 a, I32 b) { return a * b; }
  static I32 add_i32(I32 a, I32 b) { return a + b; }
  static int32_t reduce_i32(I32 v) { return v; }
  static void store_round_i8(int8_t* q, F v) { *q = round_int8(v); }
};

#ifdef SLLM_CPU_X86

// ---- AVX2 + FMA: 8 floats ----

#pragma GCC push_options
#pragma GCC target("avx2,fma")

template <>
struct Vec<Isa::avx2> {
  using F = __m256;
  using I32 = __m256i;
  static constexpr int kWidth = 8;
  static constexpr int kI16Width = 16;
  static constexpr int kAccs = 2;
  static constexpr bool kTiles = true;
  static constexpr int kOuts = 1;                // outputs per register tile
  static constexpr bool kGroupedX = false;       // NF4 codes come in element order
  static constexpr int kGsumTileRows = 0;        // no group-sum GEMM tile
  static constexpr bool kInt4ExactGemv = false;  // int4 GEMV sums q * x per group

  static SLLM_VEC_INLINE F zero() { return _mm256_setzero_ps(); }
  static SLLM_VEC_INLINE F set1(float v) { return _mm256_set1_ps(v); }
  static SLLM_VEC_INLINE F load(const float* p) { return _mm256_loadu_ps(p); }
  static SLLM_VEC_INLINE void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static SLLM_VEC_INLINE F add(F a, F b) { return _mm256_add_ps(a, b); }
  static SLLM_VEC_INLINE F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static SLLM_VEC_INLINE F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static SLLM_VEC_INLINE F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static SLLM_VEC_INLINE float reduce_add(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static SLLM_VEC_INLINE F abs(F v) {
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
  }
  static SLLM_VEC_INLINE F max(F a, F b) { return _mm256_max_ps(a, b); }
  static SLLM_VEC_INLINE float reduce_max(F m) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
  }
  static SLLM_VEC_INLINE F keep_lt(F a, F t) {
    return _mm256_and_ps(a, _mm256_cmp_ps(a, t, _CMP_LT_OQ));
  }
  static SLLM_VEC_INLINE void prefetch(const void* p) {
    _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
  }

  // Two accumulators over 16 floats, one more vector, then the tail in scalar.
  static SLLM_VEC_INLINE float dot(const float* a, const float* b, int64_t n) {
    F a0 = zero(), a1 = zero();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      a0 = fma(load(a + i), load(b + i), a0);
      a1 = fma(load(a + i + 8), load(b + i + 8), a1);
    }
    if (i + 8 <= n) {
      a0 = fma(load(a + i), load(b + i), a0);
      i += 8;
    }
    float v = reduce_add(add(a0, a1));
    for (; i < n; ++i) v += a[i] * b[i];
    return v;
  }

  // NF4: code[idx & 15] for 8 lanes: two in-register permutes (low 3 bits) and a blend on bit 3.
  struct Nf4Lut {
    __m256 lo, hi;  // code[0..7], code[8..15]
  };
  static SLLM_VEC_INLINE Nf4Lut nf4_lut(const float* code) {
    return {_mm256_loadu_ps(code), _mm256_loadu_ps(code + 8)};
  }
  // The table times a (code[q] * a, the same fp32 product as dequantization).
  static SLLM_VEC_INLINE Nf4Lut nf4_scale_lut(const Nf4Lut& l, float a) {
    const __m256 av = _mm256_set1_ps(a);
    return {_mm256_mul_ps(l.lo, av), _mm256_mul_ps(l.hi, av)};
  }
  // The codes of the 8 elements of the 4 bytes at p, in element order.
  static SLLM_VEC_INLINE F nf4_group(const Nf4Lut& l, const uint8_t* p) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    // each lane's nibble in its low 4 bits; the bits above are garbage the permutes ignore
    const __m256i shifts = _mm256_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24);
    const __m256i idx = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(w)), shifts);
    const __m256 lo = _mm256_permutevar8x32_ps(l.lo, idx);
    const __m256 hi = _mm256_permutevar8x32_ps(l.hi, idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
  // Elements i .. i + 7 (i even).
  static SLLM_VEC_INLINE F nf4_codes(const Nf4Lut& l, const uint8_t* packed, int64_t i) {
    return nf4_group(l, packed + (i >> 1));
  }
  static SLLM_VEC_INLINE void store_bf16(uint16_t* p, F v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(nan));
    const __m256i packed = _mm256_packus_epi32(r, r);  // per lane: r0..3 r0..3 | r4..7 r4..7
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                     _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08)));
  }

  // int4: 16 weights from 8 bytes, the even elements (low nibbles) and the odd ones.
  static SLLM_VEC_INLINE void u4_to_f(const uint8_t* p, F& qe, F& qo) {
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    qe = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(0x0F)));
    qo = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
  }
  struct Int4Lut {
    __m256 s, z;
  };
  static SLLM_VEC_INLINE Int4Lut int4_lut(float s, float z) {
    return {_mm256_set1_ps(s), _mm256_set1_ps(z)};
  }
  static SLLM_VEC_INLINE void int4_decode(const uint8_t* p, const Int4Lut& l, F& we, F& wo) {
    F qe, qo;
    u4_to_f(p, qe, qo);
    we = mul(sub(qe, l.z), l.s);
    wo = mul(sub(qo, l.z), l.s);
  }
  // 16 floats in element order from the even and odd ones.
  static SLLM_VEC_INLINE void store_interleaved(float* p, F even, F odd) {
    const __m256 lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
    _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
  // 8 weights from 8 bytes.
  static SLLM_VEC_INLINE F u8_to_f(const uint8_t* p) {
    return _mm256_cvtepi32_ps(
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }

  // int8: 16 int16 lanes, pairwise multiply-add into 8 int32 lanes.
  static SLLM_VEC_INLINE I32 zero_i32() { return _mm256_setzero_si256(); }
  static SLLM_VEC_INLINE I32 load_i8_i16(const int8_t* p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static SLLM_VEC_INLINE I32 load_i16(const int16_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static SLLM_VEC_INLINE I32 madd_i16(I32 a, I32 b) { return _mm256_madd_epi16(a, b); }
  static SLLM_VEC_INLINE I32 add_i32(I32 a, I32 b) { return _mm256_add_epi32(a, b); }
  static SLLM_VEC_INLINE int32_t reduce_i32(I32 v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
  }
  // 8 values rounded to nearest even (cvtps in the default MXCSR mode, as std::nearbyint) and
  // saturated to int8.
  static SLLM_VEC_INLINE void store_round_i8(int8_t* q, F v) {
    const __m256i i = _mm256_cvtps_epi32(v);
    const __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q), _mm_packs_epi16(h, h));
  }
};

#pragma GCC pop_options

// ---- AVX-512 F + BW: 16 floats ----

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx2,fma")
// GCC 12 warns on the deliberately undefined pass-through operands inside its own AVX-512
// intrinsics (_mm512_undefined_epi32, the __Y of _mm512_reduce_add_ps) when they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

template <>
struct Vec<Isa::avx512> {
  using F = __m512;
  using I32 = __m512i;
  static constexpr int kWidth = 16;
  static constexpr int kI16Width = 32;
  static constexpr int kAccs = 2;
  static constexpr bool kTiles = true;
  static constexpr int kOuts = 2;
  // NF4 register paths decode 16 codes from one 8-byte broadcast into a lane order of their own
  // (nf4_group) and take x permuted into it (nf4_group_x) once per call.
  static constexpr bool kGroupedX = true;
  // int8 group-wise GEMM of up to this many rows sums q * x per group (group_sums).
  static constexpr int kGsumTileRows = 4;
  // int4 GEMV multiplies the exact weights from the group's 16-entry table.
  static constexpr bool kInt4ExactGemv = true;

  static SLLM_VEC_INLINE F zero() { return _mm512_setzero_ps(); }
  static SLLM_VEC_INLINE F set1(float v) { return _mm512_set1_ps(v); }
  static SLLM_VEC_INLINE F load(const float* p) { return _mm512_loadu_ps(p); }
  static SLLM_VEC_INLINE void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static SLLM_VEC_INLINE F add(F a, F b) { return _mm512_add_ps(a, b); }
  static SLLM_VEC_INLINE F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static SLLM_VEC_INLINE F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static SLLM_VEC_INLINE F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static SLLM_VEC_INLINE float reduce_add(F v) { return _mm512_reduce_add_ps(v); }
  static SLLM_VEC_INLINE void prefetch(const void* p) {
    _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
  }

  // Two accumulators over 32 floats, one more vector, the last n % 16 by masked loads.
  static SLLM_VEC_INLINE float dot(const float* a, const float* b, int64_t n) {
    const int64_t full = n & ~int64_t{15};
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - full)) - 1u);
    F a0 = zero(), a1 = zero();
    int64_t i = 0;
    for (; i + 32 <= full; i += 32) {
      a0 = fma(load(a + i), load(b + i), a0);
      a1 = fma(load(a + i + 16), load(b + i + 16), a1);
    }
    if (i < full) {
      a0 = fma(load(a + i), load(b + i), a0);
      i += 16;
    }
    if (tail) a1 = fma(_mm512_maskz_loadu_ps(tail, a + i), _mm512_maskz_loadu_ps(tail, b + i), a1);
    return reduce_add(add(a0, a1));
  }

  // NF4: the 16-entry code table in one register, one permute per 16 weights.
  using Nf4Lut = __m512;
  static SLLM_VEC_INLINE Nf4Lut nf4_lut(const float* code) { return _mm512_loadu_ps(code); }
  static SLLM_VEC_INLINE Nf4Lut nf4_scale_lut(Nf4Lut l, float a) {
    return _mm512_mul_ps(l, _mm512_set1_ps(a));
  }
  // Elements i .. i + 15 (i even) in element order: dword 0 of the 8 bytes feeds lanes 0-7,
  // dword 1 lanes 8-15, each shifted to its nibble (the bits above are garbage the permute
  // ignores).
  static SLLM_VEC_INLINE F nf4_codes(Nf4Lut l, const uint8_t* packed, int64_t i) {
    const __m512i words = _mm512_zextsi128_si512(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + (i >> 1))));
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i shifts =
        _mm512_setr_epi32(4, 0, 12, 8, 20, 16, 28, 24, 4, 0, 12, 8, 20, 16, 28, 24);
    return _mm512_permutexvar_ps(_mm512_srlv_epi32(_mm512_permutexvar_epi32(spread, words), shifts),
                                 l);
  }
  // The 16 codes of the 8 bytes at p in group order: one 8-byte broadcast feeds all lanes, the
  // even dword lanes see bytes 0-3, the odd ones bytes 4-7, so after the per-lane shifts lane 2m
  // holds weight m and lane 2m + 1 weight 8 + m.
  static SLLM_VEC_INLINE F nf4_group(Nf4Lut l, const uint8_t* p) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    const __m512i shifts =
        _mm512_setr_epi32(4, 4, 0, 0, 12, 12, 8, 8, 20, 20, 16, 16, 28, 28, 24, 24);
    return _mm512_permutexvar_ps(
        _mm512_srlv_epi32(_mm512_set1_epi64(static_cast<long long>(w)), shifts), l);
  }
  // x [n] (n % 16 == 0) in nf4_group's lane order: within each 16, x[m] then x[8 + m].
  static void nf4_group_x(const float* x, int64_t n, float* out) {
    for (int64_t g = 0; g < n; g += 16)
      for (int m = 0; m < 8; ++m) {
        out[g + 2 * m] = x[g + m];
        out[g + 2 * m + 1] = x[g + 8 + m];
      }
  }

  // int4: (k - zero) * scale for k = 0..15, a group's dequantized values indexed by the nibble.
  using Int4Lut = __m512;
  static SLLM_VEC_INLINE Int4Lut int4_lut(float s, float z) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(z)), _mm512_set1_ps(s));
  }
  // 32 weights from 16 bytes through the table: even elements (low nibbles; the permute reads
  // only the low 4 bits of each index) and odd elements.
  static SLLM_VEC_INLINE void int4_decode(const uint8_t* p, Int4Lut l, F& we, F& wo) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    we = _mm512_permutexvar_ps(b, l);
    wo = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), l);
  }
  static SLLM_VEC_INLINE void store_interleaved(float* p, F even, F odd) {
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_storeu_ps(p, _mm512_permutex2var_ps(even, lo, odd));
    _mm512_storeu_ps(p + 16, _mm512_permutex2var_ps(even, hi, odd));
  }
  // 16 weights from 16 bytes.
  static SLLM_VEC_INLINE F u8_to_f(const uint8_t* p) {
    return _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }

  // int8: 32 int16 lanes, pairwise multiply-add into 16 int32 lanes.
  static SLLM_VEC_INLINE I32 zero_i32() { return _mm512_setzero_si512(); }
  static SLLM_VEC_INLINE I32 load_i8_i16(const int8_t* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static SLLM_VEC_INLINE I32 load_i16(const int16_t* p) { return _mm512_loadu_si512(p); }
  static SLLM_VEC_INLINE I32 madd_i16(I32 a, I32 b) { return _mm512_madd_epi16(a, b); }
  static SLLM_VEC_INLINE I32 add_i32(I32 a, I32 b) { return _mm512_add_epi32(a, b); }
  static SLLM_VEC_INLINE int32_t reduce_i32(I32 v) { return _mm512_reduce_add_epi32(v); }
};

#pragma GCC diagnostic pop
#pragma GCC pop_options

#endif  // SLLM_CPU_X86

// How far ahead of the row it reads a GEMV asks for the next weight rows, and the request itself:
// one prefetch per 64-byte line of the n bytes at p. Left to the hardware prefetcher, the fused
// decode kernels waited on DRAM for most of their time (docs/performance.md; the distance was
// the best of 0.7 / 1.4 / 2.9 / 5.8 KB on the default model's decode).
constexpr int64_t kRowPrefetchBytes = 3072;
inline void prefetch_lines(const void* p, int64_t n) {
  const char* c = static_cast<const char*>(p);
  for (int64_t off = 0; off < n; off += 64) __builtin_prefetch(c + off, 0, 3);
}

}  // namespace sllm::kernels::cpu
