// Group-wise int4 / int8 matmul kernel bodies (GPTQ / AWQ / RTN), written once against Vec<I>
// (vec.h). Included by the ISA translation units (isa_*.cpp) after they enable their
// instruction set; defines isa::intq_*<SLLM_KERNEL_ISA>. Format and contracts: intq_matmul.h.
// The SIMD ISAs run only shapes whose groups are whole vectors (intq_matmul.cpp `fit`); the
// scalar one takes any shape. B is the storage bits (4 or 8).
// No include guard: one inclusion per ISA translation unit. The standard headers come first
// (isa_kernels.h); tile_body.h is included here so that it gets the ISA's target as well.
#ifndef SLLM_KERNEL_ISA
#error "define SLLM_KERNEL_ISA (and the matching #pragma GCC target) before including this"
#endif

#include "kernels/cpu/tile_body.h"

namespace sllm::kernels::cpu::isa {
namespace {
namespace intq {

// How far ahead the multi-output tiles prefetch each weight row: they read O rows interleaved,
// which the hardware prefetcher follows poorly when the weights come from L3 / DRAM.
constexpr int64_t kPrefetchBytes = 1024;
// Rows of x per exact tile.
constexpr int kTileRows = 8;

inline const uint8_t* row_of(const IntQView& w, int64_t o) {
  return w.q + o * (w.storage_bits == 4 ? w.in / 2 : w.in);
}

// Element i of a storage-4 row: the low nibble holds the even element.
inline int q4(const uint8_t* row, int64_t i) {
  const uint8_t b = row[i >> 1];
  return (i & 1) ? (b >> 4) : (b & 0x0F);
}

// Row o decoded, (q - zero) * scale in fp32 (exact on every ISA), in storage column order.
template <Isa I, int B>
void decode_row(const IntQView& w, int64_t o, float* dst) {
  using V = Vec<I>;
  constexpr int W = V::kWidth;
  const int64_t G = w.groups();
  const uint8_t* row = row_of(w, o);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
    const float s = w.scales[o * G + g], z = w.zeros[o * G + g];
    int64_t i = i0;
    if constexpr (B == 4) {
      const auto lut = V::int4_lut(s, z);
      if (i & 1) {  // a group starting inside a byte (scalar, odd group sizes)
        dst[i] = (static_cast<float>(q4(row, i)) - z) * s;
        ++i;
      }
      for (; i + 2 * W <= i1; i += 2 * W) {
        typename V::F we, wo;
        V::int4_decode(row + i / 2, lut, we, wo);
        V::store_interleaved(dst + i, we, wo);
      }
      for (; i < i1; ++i) dst[i] = (static_cast<float>(q4(row, i)) - z) * s;
    } else {
      const auto sv = V::set1(s), zv = V::set1(z);
      for (; i + W <= i1; i += W) V::store(dst + i, V::mul(V::sub(V::u8_to_f(row + i), zv), sv));
    }
  }
}

template <Isa I, int B>
void dequant(const IntQView& w, const int64_t* perm, int64_t o0, int64_t o1, float* out) {
  float* buf = perm ? scratch(0, w.in) : nullptr;
  for (int64_t o = o0; o < o1; ++o) {
    if (!perm) {
      decode_row<I, B>(w, o, out + o * w.in);
      continue;
    }
    decode_row<I, B>(w, o, buf);
    float* dst = out + o * w.in;
    for (int64_t j = 0; j < w.in; ++j) dst[perm[j]] = buf[j];
  }
}

// Each weight row decoded once into a row buffer and dotted with every row of x.
template <Isa I, int B>
void gemm_rowbuf(const IntQView& w, int64_t rows, const float* x, const float* bias, float* y,
                 int64_t o0, int64_t o1) {
  float* wr = scratch(0, w.in);
  for (int64_t o = o0; o < o1; ++o) {
    decode_row<I, B>(w, o, wr);
    for (int64_t r = 0; r < rows; ++r) {
      const float v = Vec<I>::dot(wr, x + r * w.in, w.in);
      y[r * w.out + o] = bias ? v + bias[o] : v;
    }
  }
}

// GEMV with group sums: per group, sum q * x in two accumulators, then scale once; the zero term
// is scale * zero * sum(x over the group). xs: x split for storage 4 (chunks of 2 W).
template <Isa I, int B>
void gemv_gsum(const IntQView& w, const float* xs, const float* gsum, const float* bias, float* y,
               int64_t o0, int64_t o1) {
  using V = Vec<I>;
  using F = typename V::F;
  constexpr int W = V::kWidth;
  const int64_t G = w.groups();
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = row_of(w, o);
    prefetch_lines(row + kRowPrefetchBytes, w.storage_bits == 4 ? w.in / 2 : w.in);
    const float* s = w.scales + o * G;
    const float* z = w.zeros + o * G;
    F acc = V::zero();
    float corr = 0.f;
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
      F p0 = V::zero(), p1 = V::zero();
      if constexpr (B == 4) {
        for (int64_t i = i0; i < i1; i += 2 * W) {
          F qe, qo;
          V::u4_to_f(row + i / 2, qe, qo);
          p0 = V::fma(qe, V::load(xs + i), p0);
          p1 = V::fma(qo, V::load(xs + i + W), p1);
        }
      } else {
        int64_t i = i0;
        for (; i + 2 * W <= i1; i += 2 * W) {
          p0 = V::fma(V::u8_to_f(row + i), V::load(xs + i), p0);
          p1 = V::fma(V::u8_to_f(row + i + W), V::load(xs + i + W), p1);
        }
        if (i < i1) p0 = V::fma(V::u8_to_f(row + i), V::load(xs + i), p0);
      }
      acc = V::fma(V::add(p0, p1), V::set1(s[g]), acc);
      corr += s[g] * z[g] * gsum[g];
    }
    const float v = V::reduce_add(acc) - corr;
    y[o] = bias ? v + bias[o] : v;
  }
}

// Storage-4 GEMV on the exact dequantized weights (the group's table) times split x (chunks of
// 2 W), four accumulators.
template <Isa I>
void gemv4_exact(const IntQView& w, const float* xs, const float* bias, float* y, int64_t o0,
                 int64_t o1) {
  using V = Vec<I>;
  using F = typename V::F;
  constexpr int W = V::kWidth;
  const int64_t G = w.groups();
  for (int64_t o = o0; o < o1; ++o) {
    const uint8_t* row = row_of(w, o);
    prefetch_lines(row + kRowPrefetchBytes, w.in / 2);
    F a0 = V::zero(), a1 = V::zero(), a2 = V::zero(), a3 = V::zero();
    for (int64_t g = 0; g < G; ++g) {
      const int64_t i0 = g * w.group_size, i1 = std::min(w.in, i0 + w.group_size);
      const auto lut = V::int4_lut(w.scales[o * G + g], w.zeros[o * G + g]);
      int64_t i = i0;
      for (; i + 4 * W <= i1; i += 4 * W) {
        F we, wo, we2, wo2;
        V::int4_decode(row + i / 2, lut, we, wo);
        V::int4_decode(row + i / 2 + W, lut, we2, wo2);
        a0 = V::fma(we, V::load(xs + i), a0);
        a1 = V::fma(wo, V::load(xs + i + W), a1);
        a2 = V::fma(we2, V::load(xs + i + 2 * W), a2);
        a3 = V::fma(wo2, V::load(xs + i + 3 * W), a3);
      }
      if (i < i1) {
        F we, wo;
        V::int4_decode(row + i / 2, lut, we, wo);
        a0 = V::fma(we, V::load(xs + i), a0);
        a1 = V::fma(wo, V::load(xs + i + W), a1);
      }
    }
    const float v = V::reduce_add(V::add(V::add(a0, a1), V::add(a2, a3)));
    y[o] = bias ? v + bias[o] : v;
  }
}

// Multi-row register tile: O consecutive outputs from o times R rows of x (split for storage 4),
// O * R accumulators; per chunk each output's weights are decoded once to their exact values and
// each x vector is loaded once for all O outputs.
template <Isa I, int B, int R, int O>
void gemm_tile(const IntQView& w, const float* xs, const float* bias, float* y, int64_t o) {
  using V = Vec<I>;
  using F = typename V::F;
  constexpr int W = V::kWidth;
  const int64_t G = w.groups(), in = w.in;
  const uint8_t* rows[O];
  F acc[O][R];
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k) {
    rows[k] = row_of(w, o + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[k][r] = V::zero();
  }
  for (int64_t g = 0; g < G; ++g) {
    const int64_t i0 = g * w.group_size, i1 = std::min(in, i0 + w.group_size);
    decltype(V::int4_lut(0.f, 0.f)) lut[O];
    F sv[O], zv[O];
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k) {
      const float sg = w.scales[(o + k) * G + g], zg = w.zeros[(o + k) * G + g];
      if constexpr (B == 4)
        lut[k] = V::int4_lut(sg, zg);
      else
        sv[k] = V::set1(sg), zv[k] = V::set1(zg);
      if constexpr (V::kOuts > 1)
        for (int64_t b = i0 * B / 8; b < i1 * B / 8; b += 64)
          V::prefetch(rows[k] + b + kPrefetchBytes);
    }
    if constexpr (B == 4) {
      for (int64_t i = i0; i < i1; i += 2 * W) {
        F we[O], wo[O];
#pragma GCC unroll 4
        for (int k = 0; k < O; ++k) V::int4_decode(rows[k] + i / 2, lut[k], we[k], wo[k]);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          F xe = V::load(xs + r * in + i), xo = V::load(xs + r * in + i + W);
          // one load for all O outputs (GCC would otherwise fold it into each FMA)
          if constexpr (O > 1) __asm__("" : "+v"(xe), "+v"(xo));
#pragma GCC unroll 4
          for (int k = 0; k < O; ++k) {
            acc[k][r] = V::fma(we[k], xe, acc[k][r]);
            acc[k][r] = V::fma(wo[k], xo, acc[k][r]);
          }
        }
      }
    } else {
      for (int64_t i = i0; i < i1; i += W) {
        F wv[O];
#pragma GCC unroll 4
        for (int k = 0; k < O; ++k) wv[k] = V::mul(V::sub(V::u8_to_f(rows[k] + i), zv[k]), sv[k]);
        fma_tile<I, R, O>(wv, xs + i, in, acc);
      }
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float v = V::reduce_add(acc[k][r]);
      y[r * w.out + o + k] = bias ? v + bias[o + k] : v;
    }
}

// Multi-row tile for a few rows, storage 8, with group sums as gemv_gsum (at a few rows, decoding
// a byte to its exact value costs as much as the FMAs it feeds): O outputs from o times R rows of
// x, per group O * R partial sums of q * x scaled once; gsum [R, groups] holds the zero-point
// terms.
template <Isa I, int R, int O>
void gemm8_gsum_tile(const IntQView& w, const float* x, const float* gsum, const float* bias,
                     float* y, int64_t o) {
  using V = Vec<I>;
  using F = typename V::F;
  constexpr int W = V::kWidth;
  const int64_t G = w.groups(), in = w.in;
  const uint8_t* rows[O];
  F acc[O][R];
  float corr[O][R];
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k) {
    rows[k] = row_of(w, o + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[k][r] = V::zero(), corr[k][r] = 0.f;
  }
  for (int64_t g = 0; g < G; ++g) {
    const int64_t i0 = g * w.group_size, i1 = std::min(in, i0 + w.group_size);
    F p[O][R];
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) p[k][r] = V::zero();
      for (int64_t b = i0; b < i1; b += 64) V::prefetch(rows[k] + b + kPrefetchBytes);
    }
    for (int64_t i = i0; i < i1; i += W) {
      F qv[O];
#pragma GCC unroll 4
      for (int k = 0; k < O; ++k) qv[k] = V::u8_to_f(rows[k] + i);
      fma_tile<I, R, O>(qv, x + i, in, p);
    }
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k) {
      const float sg = w.scales[(o + k) * G + g], szg = sg * w.zeros[(o + k) * G + g];
      const F sv = V::set1(sg);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        acc[k][r] = V::fma(p[k][r], sv, acc[k][r]);
        corr[k][r] += szg * gsum[r * G + g];
      }
    }
  }
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float v = V::reduce_add(acc[k][r]) - corr[k][r];
      y[r * w.out + o + k] = bias ? v + bias[o + k] : v;
    }
}

// R rows against outputs [o0, o1): tiles of V::kOuts outputs, then single ones. kGsum: the
// group-sum tile (storage 8), else the exact one.
template <Isa I, int B, bool kGsum, int R>
void gemm_rows(const IntQView& w, const float* xs, const float* gsum, const float* bias, float* y,
               int64_t o0, int64_t o1) {
  constexpr int O = Vec<I>::kOuts;
  int64_t o = o0;
  if constexpr (kGsum) {
    for (; o + O <= o1; o += O) gemm8_gsum_tile<I, R, O>(w, xs, gsum, bias, y, o);
    for (; o < o1; ++o) gemm8_gsum_tile<I, R, 1>(w, xs, gsum, bias, y, o);
  } else {
    for (; o + O <= o1; o += O) gemm_tile<I, B, R, O>(w, xs, bias, y, o);
    for (; o < o1; ++o) gemm_tile<I, B, R, 1>(w, xs, bias, y, o);
  }
}

using GemmRowsFn = void (*)(const IntQView&, const float*, const float*, const float*, float*,
                            int64_t, int64_t);

template <Isa I, int B, bool kGsum, int... R>
constexpr GemmRowsFn kRowsTable[] = {gemm_rows<I, B, kGsum, R>...};

template <Isa I, int B>
void gemm_small(const IntQView& w, int64_t rows, const float* x, const float* bias, float* y,
                int64_t o0, int64_t o1) {
  using V = Vec<I>;
  if constexpr (!V::kTiles) {
    gemm_rowbuf<I, B>(w, rows, x, bias, y, o0, o1);
  } else {
    constexpr int W = V::kWidth;
    const float* xs = B == 4 ? intq_split_x(x, rows * w.in, 2 * W) : x;
    if constexpr (B == 8 && V::kGsumTileRows > 0) {
      constexpr int T = V::kGsumTileRows;
      static_assert(T == 4);
      if (rows <= T) {
        const float* gs = intq_group_sums(w, x, rows);
        kRowsTable<I, 8, true, 1, 2, 3, 4>[rows - 1](w, xs, gs, bias, y, o0, o1);
        return;
      }
    }
    for (int64_t r = 0; r < rows; r += kTileRows) {
      const int64_t nr = std::min<int64_t>(kTileRows, rows - r);
      kRowsTable<I, B, false, 1, 2, 3, 4, 5, 6, 7, 8>[nr - 1](w, xs + r * w.in, nullptr, bias,
                                                              y + r * w.out, o0, o1);
    }
  }
}

template <Isa I, int B>
void gemv(const IntQView& w, const float* x, const float* bias, float* y, int64_t o0, int64_t o1) {
  using V = Vec<I>;
  constexpr int W = V::kWidth;
  if constexpr (!V::kTiles) {
    gemm_rowbuf<I, B>(w, 1, x, bias, y, o0, o1);
  } else if constexpr (B == 4 && V::kInt4ExactGemv) {
    gemv4_exact<I>(w, intq_split_x(x, w.in, 2 * W), bias, y, o0, o1);
  } else {
    const float* gs = intq_group_sums(w, x, 1);
    gemv_gsum<I, B>(w, B == 4 ? intq_split_x(x, w.in, 2 * W) : x, gs, bias, y, o0, o1);
  }
}

}  // namespace intq
}  // namespace

template <>
void intq_dequant<SLLM_KERNEL_ISA>(const IntQView& w, const int64_t* perm, int64_t o0, int64_t o1,
                                   float* out) {
  if (w.storage_bits == 4) return intq::dequant<SLLM_KERNEL_ISA, 4>(w, perm, o0, o1, out);
  intq::dequant<SLLM_KERNEL_ISA, 8>(w, perm, o0, o1, out);
}

template <>
void intq_gemv<SLLM_KERNEL_ISA>(const IntQView& w, const float* x, const float* bias, float* y,
                                int64_t o0, int64_t o1) {
  if (w.storage_bits == 4) return intq::gemv<SLLM_KERNEL_ISA, 4>(w, x, bias, y, o0, o1);
  intq::gemv<SLLM_KERNEL_ISA, 8>(w, x, bias, y, o0, o1);
}

template <>
void intq_gemm_small<SLLM_KERNEL_ISA>(const IntQView& w, int64_t rows, const float* x,
                                      const float* bias, float* y, int64_t o0, int64_t o1) {
  if (w.storage_bits == 4) return intq::gemm_small<SLLM_KERNEL_ISA, 4>(w, rows, x, bias, y, o0, o1);
  intq::gemm_small<SLLM_KERNEL_ISA, 8>(w, rows, x, bias, y, o0, o1);
}

}  // namespace sllm::kernels::cpu::isa
