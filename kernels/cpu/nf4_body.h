// NF4 / FP4 matmul kernel bodies, written once against Vec<I> (vec.h). Included by the ISA
// translation units (isa_*.cpp) after they enable their instruction set; defines
// isa::nf4_*<SLLM_KERNEL_ISA>. Format and contracts: nf4_matmul.h.
// No include guard: one inclusion per ISA translation unit. The standard headers come first
// (isa_kernels.h); tile_body.h is included here so that it gets the ISA's target as well.
#ifndef SLLM_KERNEL_ISA
#error "define SLLM_KERNEL_ISA (and the matching #pragma GCC target) before including this"
#endif

#include "kernels/cpu/tile_body.h"

namespace sllm::kernels::cpu::isa {
namespace {
namespace nf4 {

// How far ahead in the packed weight stream the multi-row GEMM tiles prefetch.
constexpr int64_t kPrefetchBytes = 2048;
// Rows of x per GEMM tile.
constexpr int kTileRows = 8;

// One element / one vector to fp32 or bf16 (round to nearest even).
inline void put1(float* p, float v) { *p = v; }
inline void put1(uint16_t* p, float v) { *p = bf16_bits(v); }
template <Isa I>
SLLM_VEC_INLINE void put(float* p, typename Vec<I>::F v) {
  Vec<I>::store(p, v);
}
template <Isa I>
SLLM_VEC_INLINE void put(uint16_t* p, typename Vec<I>::F v) {
  Vec<I>::store_bf16(p, v);
}

// Element i of [e0, e1) to out[i - e0] (so the GEMM can decode one weight row into a buffer), as
// T = float or uint16_t (bf16 bits). Whole vectors start on even elements (a byte boundary); the
// rest goes one by one.
template <Isa I, class T>
void dequant(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
             int64_t e0, int64_t e1, T* out) {
  using V = Vec<I>;
  constexpr int W = V::kWidth;
  const auto lut = V::nf4_lut(code);
  for (int64_t s = e0, blk = e0 / blocksize; s < e1; ++blk) {
    const int64_t e = std::min(e1, (blk + 1) * blocksize);
    const float a = absmax[blk];
    const auto av = V::set1(a);
    int64_t i = s;
    s = e;
    if (W > 1 && (i & 1)) {
      put1(out + (i - e0), code[nf4_nibble(packed, i)] * a);
      ++i;
    }
    for (; i + W <= e; i += W) put<I>(out + (i - e0), V::mul(V::nf4_codes(lut, packed, i), av));
    for (; i < e; ++i) put1(out + (i - e0), code[nf4_nibble(packed, i)] * a);
  }
}

// The codes of elements i .. i + W - 1 (i even), in group order when kGrouped.
template <Isa I, bool kGrouped>
SLLM_VEC_INLINE typename Vec<I>::F codes(const typename Vec<I>::Nf4Lut& lut, const uint8_t* packed,
                                         int64_t i) {
  if constexpr (kGrouped)
    return Vec<I>::nf4_group(lut, packed + (i >> 1));
  else
    return Vec<I>::nf4_codes(lut, packed, i);
}

// GEMV for rows [o0, o1): per block, products code[q] * x in kAccs accumulators, scaled by the
// absmax once. kGrouped (in and blocksize multiples of the width): codes in V's group order and
// x permuted to match (nf4_group_x).
template <Isa I, bool kGrouped>
void gemv(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
          int64_t in, const float* x, const float* bias, float* y, int64_t o0, int64_t o1) {
  using V = Vec<I>;
  using F = typename V::F;
  constexpr int W = V::kWidth;
  const auto lut = V::nf4_lut(code);
  for (int64_t o = o0; o < o1; ++o) {
    const int64_t r0 = o * in;
    const int64_t r1 = r0 + in;
    prefetch_lines(packed + r0 / 2 + kRowPrefetchBytes, in / 2);
    F acc = V::zero();
    float sacc = 0.f;
    for (int64_t s = r0, blk = r0 / blocksize; s < r1; ++blk) {
      const int64_t e = std::min(r1, (blk + 1) * blocksize);
      const float a = absmax[blk];
      const int64_t seg = s;
      const float* xs = x + (seg - r0);  // xs[i - seg] = x at flat element index i
      F p0 = V::zero(), p1 = V::zero();
      float sp = 0.f;
      int64_t i = s;
      s = e;
      if (W > 1 && (i & 1)) {
        sp += code[nf4_nibble(packed, i)] * xs[i - seg];
        ++i;
      }
      if constexpr (V::kAccs > 1)
        for (; i + 2 * W <= e; i += 2 * W) {
          p0 = V::fma(codes<I, kGrouped>(lut, packed, i), V::load(xs + (i - seg)), p0);
          p1 = V::fma(codes<I, kGrouped>(lut, packed, i + W), V::load(xs + (i - seg) + W), p1);
        }
      for (; i + W <= e; i += W)
        p0 = V::fma(codes<I, kGrouped>(lut, packed, i), V::load(xs + (i - seg)), p0);
      for (; i < e; ++i) sp += code[nf4_nibble(packed, i)] * xs[i - seg];
      acc = V::fma(V::add(p0, p1), V::set1(a), acc);
      sacc += sp * a;
    }
    const float r = V::reduce_add(acc) + sacc;
    y[o] = bias ? r + bias[o] : r;
  }
}

// Multi-row GEMM register tile (in and blocksize multiples of the width): O consecutive outputs
// from o times R rows of x (V's group order, row stride in), O * R accumulators. Per group of W
// columns each output's weights are decoded once (the code table pre-scaled by the block's
// absmax: code[q] * a, as dequantization) and each x vector is loaded once for all O.
template <Isa I, int R, int O>
void gemm_tile(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
               int64_t out, int64_t in, const float* xg, const float* bias, float* y, int64_t o) {
  using V = Vec<I>;
  using F = typename V::F;
  constexpr int W = V::kWidth;
  const auto lut = V::nf4_lut(code);
  F acc[O][R];
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) acc[k][r] = V::zero();
  // Per output: its current block and the column where the next one starts (boundaries fall on
  // whole vectors since in and blocksize are multiples of W).
  int64_t blk[O], next[O];
  typename V::Nf4Lut sl[O];
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k) {
    blk[k] = (o + k) * in / blocksize;
    next[k] = (blk[k] + 1) * blocksize - (o + k) * in;
    sl[k] = V::nf4_scale_lut(lut, absmax[blk[k]]);
  }
  for (int64_t i = 0; i < in;) {
    int64_t e = in;
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k) {
      e = std::min(e, next[k]);
      // Few rows leave too little work per byte to hide L3 / DRAM latency, and O rows read
      // interleaved are followed poorly by the hardware prefetcher.
      V::prefetch(packed + (((o + k) * in + i) >> 1) + kPrefetchBytes);
    }
    for (; i < e; i += W) {
      F wv[O];
#pragma GCC unroll 4
      for (int k = 0; k < O; ++k) wv[k] = V::nf4_group(sl[k], packed + (((o + k) * in + i) >> 1));
      fma_tile<I, R, O>(wv, xg + i, in, acc);
    }
    if (i >= in) break;
#pragma GCC unroll 4
    for (int k = 0; k < O; ++k)
      if (next[k] == i) {
        ++blk[k];
        next[k] += blocksize;
        sl[k] = V::nf4_scale_lut(lut, absmax[blk[k]]);
      }
  }
#pragma GCC unroll 4
  for (int k = 0; k < O; ++k)
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float v = V::reduce_add(acc[k][r]);
      y[r * out + o + k] = bias ? v + bias[o + k] : v;
    }
}

// R rows against outputs [o0, o1): tiles of V::kOuts outputs, then single ones.
template <Isa I, int R>
void gemm_rows(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
               int64_t out, int64_t in, const float* xg, const float* bias, float* y, int64_t o0,
               int64_t o1) {
  constexpr int O = Vec<I>::kOuts;
  int64_t o = o0;
  for (; o + O <= o1; o += O)
    gemm_tile<I, R, O>(packed, absmax, code, blocksize, out, in, xg, bias, y, o);
  for (; o < o1; ++o) gemm_tile<I, R, 1>(packed, absmax, code, blocksize, out, in, xg, bias, y, o);
}

// Any shape: each weight row is dequantized once into a row buffer, then dotted with nr rows.
template <Isa I>
void gemm_rowbuf(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                 int64_t out, int64_t in, int64_t nr, const float* x, const float* bias, float* y,
                 int64_t o0, int64_t o1) {
  float* wr = scratch(0, in);
  for (int64_t o = o0; o < o1; ++o) {
    dequant<I>(packed, absmax, code, blocksize, o * in, o * in + in, wr);
    for (int64_t r = 0; r < nr; ++r) {
      const float v = Vec<I>::dot(wr, x + r * in, in);
      y[r * out + o] = bias ? v + bias[o] : v;
    }
  }
}

template <Isa I>
void gemm_small(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                int64_t out, int64_t in, int64_t rows, const float* x, const float* bias, float* y,
                int64_t o0, int64_t o1) {
  using V = Vec<I>;
  if constexpr (V::kTiles) {
    constexpr int W = V::kWidth;
    if (in % W == 0 && blocksize % W == 0) {
      const float* xg = x;
      if constexpr (V::kGroupedX) {
        float* buf = scratch(1, rows * in);
        V::nf4_group_x(x, rows * in, buf);
        xg = buf;
      }
      using Fn = void (*)(const uint8_t*, const float*, const float*, int64_t, int64_t, int64_t,
                          const float*, const float*, float*, int64_t, int64_t);
      static constexpr Fn kRows[kTileRows] = {gemm_rows<I, 1>, gemm_rows<I, 2>, gemm_rows<I, 3>,
                                              gemm_rows<I, 4>, gemm_rows<I, 5>, gemm_rows<I, 6>,
                                              gemm_rows<I, 7>, gemm_rows<I, 8>};
      for (int64_t r = 0; r < rows; r += kTileRows)
        kRows[std::min<int64_t>(kTileRows, rows - r) - 1](packed, absmax, code, blocksize, out, in,
                                                          xg + r * in, bias, y + r * out, o0, o1);
      return;
    }
    for (int64_t r = 0; r < rows; r += kTileRows)
      gemm_rowbuf<I>(packed, absmax, code, blocksize, out, in,
                     std::min<int64_t>(kTileRows, rows - r), x + r * in, bias, y + r * out, o0, o1);
  } else {
    gemm_rowbuf<I>(packed, absmax, code, blocksize, out, in, rows, x, bias, y, o0, o1);
  }
}

template <Isa I>
void dequant_bf16_any(const uint8_t* packed, const float* absmax, const float* code,
                      int64_t blocksize, int64_t e0, int64_t e1, uint16_t* out) {
  if constexpr (requires(uint16_t * p, typename Vec<I>::F v) { Vec<I>::store_bf16(p, v); })
    dequant<I>(packed, absmax, code, blocksize, e0, e1, out + e0);
  else  // no bf16 store of its own: the AVX2 one
    nf4_dequant_bf16<Isa::avx2>(packed, absmax, code, blocksize, e0, e1, out);
}

template <Isa I>
void gemv_any(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
              int64_t in, const float* x, const float* bias, float* y, int64_t o0, int64_t o1) {
  using V = Vec<I>;
  if constexpr (V::kGroupedX) {
    if (in % V::kWidth == 0 && blocksize % V::kWidth == 0) {
      float* xg = scratch(1, in);
      V::nf4_group_x(x, in, xg);
      return gemv<I, true>(packed, absmax, code, blocksize, in, xg, bias, y, o0, o1);
    }
  }
  gemv<I, false>(packed, absmax, code, blocksize, in, x, bias, y, o0, o1);
}

}  // namespace nf4
}  // namespace

template <>
void nf4_dequant_f32<SLLM_KERNEL_ISA>(const uint8_t* packed, const float* absmax, const float* code,
                                      int64_t blocksize, int64_t e0, int64_t e1, float* out) {
  nf4::dequant<SLLM_KERNEL_ISA>(packed, absmax, code, blocksize, e0, e1, out + e0);
}

template <>
void nf4_dequant_bf16<SLLM_KERNEL_ISA>(const uint8_t* packed, const float* absmax,
                                       const float* code, int64_t blocksize, int64_t e0, int64_t e1,
                                       uint16_t* out) {
  nf4::dequant_bf16_any<SLLM_KERNEL_ISA>(packed, absmax, code, blocksize, e0, e1, out);
}

template <>
void nf4_gemv<SLLM_KERNEL_ISA>(const uint8_t* packed, const float* absmax, const float* code,
                               int64_t blocksize, int64_t in, const float* x, const float* bias,
                               float* y, int64_t o0, int64_t o1) {
  nf4::gemv_any<SLLM_KERNEL_ISA>(packed, absmax, code, blocksize, in, x, bias, y, o0, o1);
}

template <>
void nf4_gemm_small<SLLM_KERNEL_ISA>(const uint8_t* packed, const float* absmax, const float* code,
                                     int64_t blocksize, int64_t out, int64_t in, int64_t rows,
                                     const float* x, const float* bias, float* y, int64_t o0,
                                     int64_t o1) {
  nf4::gemm_small<SLLM_KERNEL_ISA>(packed, absmax, code, blocksize, out, in, rows, x, bias, y, o0,
                                   o1);
}

}  // namespace sllm::kernels::cpu::isa
