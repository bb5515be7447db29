// LLM.int8() kernel bodies (row-wise int8 quantization of x, int8 x int8 -> int32 GEMM), written
// once against Vec<I> (vec.h). Included by the ISA translation units (isa_*.cpp) after they
// enable their instruction set; defines isa::int8_*<SLLM_KERNEL_ISA>. Contracts: intq_matmul.h.
// No include guard: one inclusion per ISA translation unit; the headers it needs come first.
#ifndef SLLM_KERNEL_ISA
#error "define SLLM_KERNEL_ISA (and the matching #pragma GCC target) before including this"
#endif

namespace sllm::kernels::cpu::isa {
namespace {
namespace int8 {

// Row absmax over the elements below the threshold (all when threshold <= 0), one by one.
inline float row_absmax_tail(const float* x, int64_t in, float threshold) {
  float m = 0.f;
  for (int64_t i = 0; i < in; ++i) {
    const float a = std::fabs(x[i]);
    if ((threshold <= 0.f || a < threshold) && a > m) m = a;
  }
  return m;
}

// max is exact: every ISA gives the same result for finite x.
template <Isa I>
float row_absmax(const float* x, int64_t in, float threshold) {
  using V = Vec<I>;
  constexpr int W = V::kWidth;
  const auto tv = V::set1(threshold);
  auto m = V::zero();
  int64_t i = 0;
  for (; i + W <= in; i += W) {
    auto a = V::abs(V::load(x + i));
    if (threshold > 0.f) a = V::keep_lt(a, tv);
    m = V::max(m, a);
  }
  return std::max(V::reduce_max(m), row_absmax_tail(x + i, in - i, threshold));
}

template <Isa I>
void quantize_row(const float* x, int64_t in, float inv, int8_t* q) {
  using V = Vec<I>;
  constexpr int W = V::kWidth;
  const auto iv = V::set1(inv);
  int64_t i = 0;
  // |values| <= 127 except in outlier columns, which are zeroed afterwards (saturated meanwhile)
  for (; i + W <= in; i += W) V::store_round_i8(q + i, V::mul(V::load(x + i), iv));
  for (; i < in; ++i) q[i] = round_int8(x[i] * inv);
}

// m[j] = max(m[j], |x[j]|).
template <Isa I>
void column_absmax(const float* x, int64_t in, float* m) {
  using V = Vec<I>;
  constexpr int W = V::kWidth;
  int64_t j = 0;
  for (; j + W <= in; j += W) V::store(m + j, V::max(V::load(m + j), V::abs(V::load(x + j))));
  for (; j < in; ++j) m[j] = std::max(m[j], std::fabs(x[j]));
}

// int8 x int8 -> int32 for R rows: weights and x sign-extended to int16, pairwise multiply-add
// (exact: |products| <= 2^14, pair sums fit int16 x int16 -> int32).
template <Isa I, int R>
void gemm_tile(const int8_t* w, const float* scb, int64_t out, int64_t in, const int16_t* x16,
               const int8_t* qx, const float* sx, const float* bias, float* y, int64_t o0,
               int64_t o1, float dq) {
  using V = Vec<I>;
  constexpr int W = V::kI16Width;
  const int64_t full = in & ~int64_t{W - 1};
  for (int64_t o = o0; o < o1; ++o) {
    const int8_t* wr = w + o * in;
    prefetch_lines(wr + kRowPrefetchBytes, in);
    typename V::I32 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = V::zero_i32();
    for (int64_t i = 0; i < full; i += W) {
      const auto wv = V::load_i8_i16(wr + i);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        acc[r] = V::add_i32(acc[r], V::madd_i16(wv, V::load_i16(x16 + r * in + i)));
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      int32_t a = V::reduce_i32(acc[r]);
      for (int64_t i = full; i < in; ++i) a += int32_t{wr[i]} * int32_t{qx[r * in + i]};
      const float v = static_cast<float>(a) * (sx[r] * scb[o]) * dq;
      y[r * out + o] = bias ? v + bias[o] : v;
    }
  }
}

constexpr int kTileRows = 8;

template <Isa I>
void gemm(const int8_t* w, const float* scb, int64_t out, int64_t in, int64_t rows,
          const int16_t* x16, const int8_t* qx, const float* sx, const float* bias, float* y,
          int64_t o0, int64_t o1, float dq) {
  using Fn = void (*)(const int8_t*, const float*, int64_t, int64_t, const int16_t*, const int8_t*,
                      const float*, const float*, float*, int64_t, int64_t, float);
  static constexpr Fn kTiles[kTileRows] = {gemm_tile<I, 1>, gemm_tile<I, 2>, gemm_tile<I, 3>,
                                           gemm_tile<I, 4>, gemm_tile<I, 5>, gemm_tile<I, 6>,
                                           gemm_tile<I, 7>, gemm_tile<I, 8>};
  for (int64_t r = 0; r < rows; r += kTileRows)
    kTiles[std::min<int64_t>(kTileRows, rows - r) - 1](w, scb, out, in, x16 + r * in, qx + r * in,
                                                       sx + r, bias, y + r * out, o0, o1, dq);
}

template <Isa I>
float row_absmax_any(const float* x, int64_t in, float threshold) {
  if constexpr (requires { &Vec<I>::keep_lt; })
    return row_absmax<I>(x, in, threshold);
  else
    return int8_row_absmax<Isa::avx2>(x, in, threshold);
}

template <Isa I>
void quantize_row_any(const float* x, int64_t in, float inv, int8_t* q) {
  if constexpr (requires { &Vec<I>::store_round_i8; })
    quantize_row<I>(x, in, inv, q);
  else
    int8_quantize_row<Isa::avx2>(x, in, inv, q);
}

template <Isa I>
void column_absmax_any(const float* x, int64_t in, float* m) {
  if constexpr (requires { &Vec<I>::max; })
    column_absmax<I>(x, in, m);
  else
    int8_column_absmax<Isa::avx2>(x, in, m);
}

}  // namespace int8
}  // namespace

template <>
float int8_row_absmax<SLLM_KERNEL_ISA>(const float* x, int64_t in, float threshold) {
  return int8::row_absmax_any<SLLM_KERNEL_ISA>(x, in, threshold);
}

template <>
void int8_quantize_row<SLLM_KERNEL_ISA>(const float* x, int64_t in, float inv, int8_t* q) {
  int8::quantize_row_any<SLLM_KERNEL_ISA>(x, in, inv, q);
}

template <>
void int8_column_absmax<SLLM_KERNEL_ISA>(const float* x, int64_t in, float* m) {
  int8::column_absmax_any<SLLM_KERNEL_ISA>(x, in, m);
}

template <>
void int8_gemm<SLLM_KERNEL_ISA>(const int8_t* w, const float* scb, int64_t out, int64_t in,
                                int64_t rows, const int16_t* x16, const int8_t* qx, const float* sx,
                                const float* bias, float* y, int64_t o0, int64_t o1, float dq) {
  int8::gemm<SLLM_KERNEL_ISA>(w, scb, out, in, rows, x16, qx, sx, bias, y, o0, o1, dq);
}

}  // namespace sllm::kernels::cpu::isa
