// GGUF block matmul bodies (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K as stored), one
// instantiation per ISA translation unit (gguf_isa_*.cpp), which enables its instruction set before
// including this. Contracts: gguf_matmul.h. The block dot products of the q8 path work on 32 int8
// lanes (one block per 256-bit vector): weights as unsigned values (Q4_1, Q5_1, Q4_K, Q5_K) or
// signed values (Q4_0 minus 8, Q5_0 minus 16, Q6_K minus 32, Q8_0; the sign moved onto x so that
// vpdpbusd / vpmaddubsw see |w| unsigned), exact in int32. K-quants run per 32-element sub-block
// of their 256-element super-blocks, each sub-block with its own scale and minimum (Q6_K: a scale
// per 16-element half, applied to the int32 lanes of each half apart).
// No include guard: one inclusion per ISA translation unit.
#ifndef SLLM_GGUF_ISA
#error "define SLLM_GGUF_ISA (and the matching #pragma GCC target) before including this"
#endif
// The vector code exists only in the SIMD translation units (SLLM_GGUF_SIMD 1).
#ifndef SLLM_GGUF_SIMD
#define SLLM_GGUF_SIMD 0
#endif

namespace sllm::kernels::cpu::gguf_isa {
namespace {

constexpr Isa kIsa = SLLM_GGUF_ISA;
constexpr int kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13,
              kQ6_K = 14;
// Types with a minimum (w = d * q + m, q unsigned; K-quants: d = d * sc, m = -dmin * m of the
// sub-block); the others are w = d * (signed q).
constexpr bool has_min(int t) { return t == kQ4_1 || t == kQ5_1 || t == kQ4_K || t == kQ5_K; }
// Q6_K: 16-element sub-blocks, so a 32-element block has a scale per half (d, d2).
constexpr bool two_scales(int t) { return t == kQ6_K; }
constexpr bool k_quant(int t) { return t >= kQ4_K; }
constexpr int kMaxTile = 4;  // rows of x per pass over the weight

inline uint16_t ld16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (static_cast<uint16_t>(p[1]) << 8));
}

inline float half(const uint8_t* p) {
#if SLLM_GGUF_SIMD
  if constexpr (kIsa != Isa::scalar) return _cvtsh_ss(ld16(p));
#endif
  return fp16_to_fp32(ld16(p));
}

// 32-element block b of a row: its scale, minimum (Q4_1, Q5_1, Q4_K, Q5_K), fifth bits (Q5_0,
// Q5_1) and quantized values. K-quants: qs points at the 32 bytes whose nibble `sh` (0 or 4) holds
// the block's low 4 bits, hs at the 32 bytes holding its high bit(s) at bit hb; Q6_K: d2 is the
// scale of elements 16..31.
struct Block {
  float d, m;
  uint32_t qh;
  const uint8_t* qs;
  float d2 = 0.f;
  const uint8_t* hs = nullptr;
  int sh = 0, hb = 0;
};
template <int T>
inline Block block_at(const uint8_t* row, int64_t b) {
  if constexpr (T == kQ4_0) {
    const uint8_t* p = row + b * 18;
    return {half(p), 0.f, 0, p + 2};
  } else if constexpr (T == kQ4_1) {
    const uint8_t* p = row + b * 20;
    return {half(p), half(p + 2), 0, p + 4};
  } else if constexpr (T == kQ5_0) {
    const uint8_t* p = row + b * 22;
    uint32_t qh;
    std::memcpy(&qh, p + 2, 4);
    return {half(p), 0.f, qh, p + 6};
  } else if constexpr (T == kQ5_1) {
    const uint8_t* p = row + b * 24;
    uint32_t qh;
    std::memcpy(&qh, p + 4, 4);
    return {half(p), half(p + 2), qh, p + 8};
  } else if constexpr (T == kQ4_K || T == kQ5_K) {
    // super-block: half d, dmin; scales[12]; (Q5_K: qh[32]); qs[128], sub-blocks 2i and 2i + 1
    // the low and high nibbles of qs[32 i .. 32 i + 31]
    const int j = static_cast<int>(b & 7);
    const uint8_t* p = row + (b >> 3) * (T == kQ4_K ? kQ4_KBytes : kQ5_KBytes);
    uint8_t sc, mn;
    scale_min_k4(j, p + 4, sc, mn);
    const uint8_t* qs = p + (T == kQ4_K ? 16 : 48) + 32 * (j / 2);
    return {half(p) * static_cast<float>(sc),
            -(half(p + 2) * static_cast<float>(mn)),
            0,
            qs,
            0.f,
            p + 16,
            4 * (j & 1),
            j};
  } else if constexpr (T == kQ6_K) {
    // super-block: ql[128]; qh[64]; int8 scales[16]; half d. Sub-block 4 h + g: low nibbles
    // (g < 2) or high nibbles of ql[64 h + 32 (g & 1) ..], bits 2 g, 2 g + 1 of qh[32 h ..],
    // scales 8 h + 2 g and 8 h + 2 g + 1 for its halves
    const int j = static_cast<int>(b & 7), h = j / 4, g = j & 3;
    const uint8_t* p = row + (b >> 3) * kQ6_KBytes;
    const float d = half(p + 208);
    const auto* sc = reinterpret_cast<const int8_t*>(p + 192 + 8 * h + 2 * g);
    return {d * static_cast<float>(sc[0]),
            0.f,
            0,
            p + 64 * h + 32 * (g & 1),
            d * static_cast<float>(sc[1]),
            p + 128 + 32 * h,
            4 * (g >> 1),
            2 * g};
  } else {
    const uint8_t* p = row + b * 34;
    return {half(p), 0.f, 0, p + 2};
  }
}

// Element j of a block as the integer the scale multiplies: Q8_0 its int8, Q4 / Q5 the low
// nibble of byte j (j < 16) or the high nibble of byte j - 16, plus bit j of qh as the fifth
// bit; minus 8 / 16 for the types without a minimum.
template <int T>
inline int weight_int(const Block& k, int j) {
  if constexpr (T == kQ8_0) return static_cast<int8_t>(k.qs[j]);
  if constexpr (k_quant(T)) {
    const int lo = (k.qs[j] >> k.sh) & 0xF;
    if constexpr (T == kQ4_K) return lo;
    if constexpr (T == kQ5_K) return lo | (((k.hs[j] >> k.hb) & 1) << 4);
    return (lo | (((k.hs[j] >> k.hb) & 3) << 4)) - 32;
  }
  const int nib = j < 16 ? (k.qs[j] & 0xF) : (k.qs[j - 16] >> 4);
  if constexpr (T == kQ5_0 || T == kQ5_1) {
    const int q = nib | static_cast<int>(((k.qh >> j) & 1u) << 4);
    return T == kQ5_0 ? q - 16 : q;
  }
  return T == kQ4_0 ? nib - 8 : nib;
}

// Scalar block dot: sum over elements [j0, j1) of the block of the integer weights times qx.
template <int T>
inline int32_t dot_scalar(const Block& k, const int8_t* qx, int j0 = 0, int j1 = 32) {
  int32_t s = 0;
  for (int j = j0; j < j1; ++j) s += weight_int<T>(k, j) * qx[j];
  return s;
}

#if SLLM_GGUF_SIMD
// The 32 weights of a block as bytes in element order: Q4 nibbles 0..15 (Q4_0: minus 8, signed),
// Q8_0 the int8 values.
template <int T>
SLLM_VEC_INLINE __m256i block_bytes(const Block& k) {
  if constexpr (T == kQ8_0) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qs));
  } else if constexpr (k_quant(T)) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qs));
    __m256i w =
        _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(k.sh)), _mm256_set1_epi8(0x0F));
    if constexpr (T == kQ4_K) return w;
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.hs));
    if constexpr (T == kQ5_K) {
      const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << k.hb));
      const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(h, bit), bit);
      return _mm256_or_si256(w, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
    }
    // Q6_K: two high bits per byte (< 4, so the 16-bit shift by 4 stays inside the byte)
    const __m256i hi =
        _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(k.hb)), _mm256_set1_epi8(3));
    return _mm256_sub_epi8(_mm256_or_si256(w, _mm256_slli_epi16(hi, 4)), _mm256_set1_epi8(32));
  } else {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(k.qs));
    const __m128i m = _mm_set1_epi8(0x0F);
    __m256i w = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m), _mm_and_si128(b, m));
    if constexpr (T == kQ5_0 || T == kQ5_1) {
      // byte j = 0xFF where bit j of qh is set: byte j / 8 of qh spread over 8 lanes, each lane
      // OR-ed with every bit but its own
      const __m256i spread = _mm256_shuffle_epi8(
          _mm256_set1_epi32(static_cast<int>(k.qh)),
          _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
      const __m256i set = _mm256_cmpeq_epi8(
          _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi8(-1));
      w = _mm256_or_si256(w, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
    }
    if constexpr (T == kQ4_0) return _mm256_sub_epi8(w, _mm256_set1_epi8(8));
    if constexpr (T == kQ5_0) return _mm256_sub_epi8(w, _mm256_set1_epi8(16));
    return w;
  }
}

// u8 x s8 products summed in groups of 4 into 8 int32 lanes.
SLLM_VEC_INLINE __m256i dot_u8s8(__m256i u, __m256i s) {
  if constexpr (kIsa == Isa::avx512) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
  } else {
    // |u| <= 128 and |s| <= 127: a pair sums to at most 32512, inside int16
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
  }
}

template <int T>
SLLM_VEC_INLINE __m256i dot_block(__m256i w, const int8_t* qx) {
  const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx));
  if constexpr (has_min(T)) return dot_u8s8(w, x);
  return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

SLLM_VEC_INLINE float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

// R rows of x against outputs [o0, o1), q8 path.
template <int T, int R>
void q8_tile(const GgufView& w, const int8_t* qx, const float* dx, const float* sx,
             const float* bias, float* y, int64_t o0, int64_t o1) {
  const int64_t nb = w.in / 32, rb = w.row_bytes();
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = w.blocks + o * rb;
    prefetch_lines(row + kRowPrefetchBytes, rb);
    float mins[R] = {};
    float res[R];
#if SLLM_GGUF_SIMD
    if constexpr (kIsa != Isa::scalar) {
      __m256 acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const Block k = block_at<T>(row, b);
        const __m256i wv = block_bytes<T>(k);
        for (int r = 0; r < R; ++r) {
          const int64_t xb = r * nb + b;
          const __m256i s = dot_block<T>(wv, qx + xb * 32);
          // int32 lane i sums elements 4 i .. 4 i + 3: lanes 0..3 are the first half
          const __m256 scale =
              two_scales(T) ? _mm256_set_m128(_mm_set1_ps(k.d2 * dx[xb]), _mm_set1_ps(k.d * dx[xb]))
                            : _mm256_set1_ps(k.d * dx[xb]);
          acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[r]);
          if constexpr (has_min(T)) mins[r] += k.m * sx[xb];
        }
      }
      for (int r = 0; r < R; ++r) res[r] = hsum(acc[r]);
    } else
#endif
    {
      for (int r = 0; r < R; ++r) res[r] = 0.f;
      for (int64_t b = 0; b < nb; ++b) {
        const Block k = block_at<T>(row, b);
        for (int r = 0; r < R; ++r) {
          const int64_t xb = r * nb + b;
          if constexpr (two_scales(T)) {
            res[r] += static_cast<float>(dot_scalar<T>(k, qx + xb * 32, 0, 16)) * (k.d * dx[xb]) +
                      static_cast<float>(dot_scalar<T>(k, qx + xb * 32, 16, 32)) * (k.d2 * dx[xb]);
          } else {
            res[r] += static_cast<float>(dot_scalar<T>(k, qx + xb * 32)) * (k.d * dx[xb]);
          }
          if constexpr (has_min(T)) mins[r] += k.m * sx[xb];
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const float v = res[r] + mins[r];
      y[r * w.out + o] = bias ? v + bias[o] : v;
    }
  }
}

// A block decoded to fp32 (the dequantizers' arithmetic: d * q, plus m for the types with a
// minimum). The SIMD form widens block_bytes' 32 int8 values 8 at a time.
template <int T>
inline void decode(const Block& k, float* f) {
#if SLLM_GGUF_SIMD
  if constexpr (kIsa != Isa::scalar) {
    const __m256i wb = block_bytes<T>(k);
    const __m256 m = _mm256_set1_ps(k.m);
    const __m256 d[2] = {_mm256_set1_ps(k.d), _mm256_set1_ps(two_scales(T) ? k.d2 : k.d)};
    const __m128i halves[2] = {_mm256_castsi256_si128(wb), _mm256_extracti128_si256(wb, 1)};
    for (int h = 0; h < 2; ++h)
      for (int e = 0; e < 2; ++e) {
        const __m128i b8 = e ? _mm_srli_si128(halves[h], 8) : halves[h];
        __m256 v = _mm256_mul_ps(d[h], _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b8)));
        if constexpr (has_min(T)) v = _mm256_add_ps(v, m);
        _mm256_store_ps(f + h * 16 + e * 8, v);
      }
    return;
  }
#endif
  for (int j = 0; j < 32; ++j) {
    const float q = static_cast<float>(weight_int<T>(k, j));
    const float d = two_scales(T) && j >= 16 ? k.d2 : k.d;
    f[j] = has_min(T) ? d * q + k.m : d * q;
  }
}

// R rows of x against outputs [o0, o1), f32 path. xs [R, in / 32]: the sum of x over each
// block, for the types with a minimum. The SIMD form keeps a block's integers in registers as
// fp32 and takes the scale and minimum out of the sum, as llama.cpp does:
// sum_j (d q_j + m) x_j = d sum_j q_j x_j + m sum_j x_j.
template <int T, int R>
void f32_tile(const GgufView& w, const float* x, const float* xs, const float* bias, float* y,
              int64_t o0, int64_t o1) {
#if SLLM_GGUF_SIMD
  if constexpr (kIsa != Isa::scalar) {
    const int64_t nb = w.in / 32, rb = w.row_bytes();
    for (int64_t o = o0; o < o1; ++o) {
      const uint8_t* row = w.blocks + o * rb;
      prefetch_lines(row + kRowPrefetchBytes, rb);
      __m256 acc[R];
      float mins[R] = {};
      for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        const Block k = block_at<T>(row, b);
        const __m256i wb = block_bytes<T>(k);
        const __m128i lo = _mm256_castsi256_si128(wb), hi = _mm256_extracti128_si256(wb, 1);
        const __m256 q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
        const __m256 q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
        const __m256 q2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
        const __m256 q3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
        const __m256 d = _mm256_set1_ps(k.d);
        for (int r = 0; r < R; ++r) {
          const float* xr = x + r * w.in + b * 32;
          if constexpr (two_scales(T)) {  // a scale per 16-element half
            __m256 t = _mm256_mul_ps(q0, _mm256_loadu_ps(xr));
            t = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xr + 8), t);
            __m256 u = _mm256_mul_ps(q2, _mm256_loadu_ps(xr + 16));
            u = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xr + 24), u);
            acc[r] = _mm256_fmadd_ps(u, _mm256_set1_ps(k.d2), _mm256_fmadd_ps(t, d, acc[r]));
          } else {
            __m256 t = _mm256_mul_ps(q0, _mm256_loadu_ps(xr));
            t = _mm256_fmadd_ps(q1, _mm256_loadu_ps(xr + 8), t);
            t = _mm256_fmadd_ps(q2, _mm256_loadu_ps(xr + 16), t);
            t = _mm256_fmadd_ps(q3, _mm256_loadu_ps(xr + 24), t);
            acc[r] = _mm256_fmadd_ps(t, d, acc[r]);
          }
          if constexpr (has_min(T)) mins[r] += k.m * xs[r * nb + b];
        }
      }
      for (int r = 0; r < R; ++r) {
        const float v = hsum(acc[r]) + mins[r];
        y[r * w.out + o] = bias ? v + bias[o] : v;
      }
    }
    return;
  }
#endif
  (void)xs;
  using V = Vec<kIsa>;
  constexpr int W = V::kWidth;
  const int64_t nb = w.in / 32, rb = w.row_bytes();
  alignas(64) float f[32];
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = w.blocks + o * rb;
    prefetch_lines(row + kRowPrefetchBytes, rb);
    typename V::F acc[R];
    for (int r = 0; r < R; ++r) acc[r] = V::zero();
    for (int64_t b = 0; b < nb; ++b) {
      decode<T>(block_at<T>(row, b), f);
      for (int r = 0; r < R; ++r) {
        const float* xr = x + r * w.in + b * 32;
#pragma GCC unroll 32
        for (int j = 0; j < 32; j += W) acc[r] = V::fma(V::load(f + j), V::load(xr + j), acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      const float v = V::reduce_add(acc[r]);
      y[r * w.out + o] = bias ? v + bias[o] : v;
    }
  }
}

#ifdef SLLM_GGUF_PANEL
#include "kernels/cpu/gguf_panel_body.h"
#endif

template <int T>
void q8_rows(const GgufView& w, int64_t rows, const int8_t* qx, const float* dx, const float* sx,
             const float* bias, float* y, int64_t o0, int64_t o1) {
#ifdef SLLM_GGUF_PANEL
  if (rows >= kPanelMinRows) return q8_panel<T>(w, rows, qx, dx, sx, bias, y, o0, o1);
#endif
  const int64_t nb = w.in / 32;
  for (int64_t r = 0; r < rows; r += kMaxTile) {
    const int64_t n = std::min<int64_t>(kMaxTile, rows - r);
    const int8_t* q = qx + r * w.in;
    const float *d = dx + r * nb, *s = sx + r * nb;
    float* yr = y + r * w.out;
    switch (n) {
      case 1:
        q8_tile<T, 1>(w, q, d, s, bias, yr, o0, o1);
        break;
      case 2:
        q8_tile<T, 2>(w, q, d, s, bias, yr, o0, o1);
        break;
      case 3:
        q8_tile<T, 3>(w, q, d, s, bias, yr, o0, o1);
        break;
      default:
        q8_tile<T, 4>(w, q, d, s, bias, yr, o0, o1);
    }
  }
}

template <int T>
void f32_rows(const GgufView& w, int64_t rows, const float* x, const float* bias, float* y,
              int64_t o0, int64_t o1) {
#ifdef SLLM_GGUF_PANEL
  if (rows >= kPanelMinRows) return f32_panel<T>(w, rows, x, bias, y, o0, o1);
#endif
  const int64_t nb = w.in / 32;
  std::vector<float> xs;
  if constexpr (has_min(T)) {  // each block's sum of x, shared by every output row
    xs.resize(static_cast<size_t>(rows * nb));
    for (int64_t i = 0; i < rows * nb; ++i) {
      float s = 0.f;
      for (int j = 0; j < 32; ++j) s += x[i * 32 + j];
      xs[static_cast<size_t>(i)] = s;
    }
  }
  for (int64_t r = 0; r < rows; r += kMaxTile) {
    const int64_t n = std::min<int64_t>(kMaxTile, rows - r);
    const float* xr = x + r * w.in;
    const float* sr = xs.empty() ? nullptr : xs.data() + r * nb;
    float* yr = y + r * w.out;
    switch (n) {
      case 1:
        f32_tile<T, 1>(w, xr, sr, bias, yr, o0, o1);
        break;
      case 2:
        f32_tile<T, 2>(w, xr, sr, bias, yr, o0, o1);
        break;
      case 3:
        f32_tile<T, 3>(w, xr, sr, bias, yr, o0, o1);
        break;
      default:
        f32_tile<T, 4>(w, xr, sr, bias, yr, o0, o1);
    }
  }
}

// f(std::integral_constant<int, T>) for the block type T of w.
template <typename F>
void by_type(int type, F&& f) {
  switch (type) {
    case kQ4_0:
      return f(std::integral_constant<int, kQ4_0>{});
    case kQ4_1:
      return f(std::integral_constant<int, kQ4_1>{});
    case kQ5_0:
      return f(std::integral_constant<int, kQ5_0>{});
    case kQ5_1:
      return f(std::integral_constant<int, kQ5_1>{});
    case kQ4_K:
      return f(std::integral_constant<int, kQ4_K>{});
    case kQ5_K:
      return f(std::integral_constant<int, kQ5_K>{});
    case kQ6_K:
      return f(std::integral_constant<int, kQ6_K>{});
    default:
      return f(std::integral_constant<int, kQ8_0>{});
  }
}

}  // namespace

template <>
void gemm_q8<SLLM_GGUF_ISA>(const GgufView& w, int64_t rows, const int8_t* qx, const float* dx,
                            const float* sx, const float* bias, float* y, int64_t o0, int64_t o1) {
  by_type(w.type,
          [&](auto t) { q8_rows<decltype(t)::value>(w, rows, qx, dx, sx, bias, y, o0, o1); });
}

template <>
void gemm_f32<SLLM_GGUF_ISA>(const GgufView& w, int64_t rows, const float* x, const float* bias,
                             float* y, int64_t o0, int64_t o1) {
  by_type(w.type, [&](auto t) { f32_rows<decltype(t)::value>(w, rows, x, bias, y, o0, o1); });
}

}  // namespace sllm::kernels::cpu::gguf_isa
