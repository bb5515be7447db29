// The q8 path over many rows of x (prefill), AVX-512 VNNI only: included by gguf_body.h inside
// its namespace when SLLM_GGUF_PANEL is defined (gguf_isa_avx512.cpp). The 4-row tiles of
// q8_tile decode every weight block again for each 4 rows of x; here a panel of 4 weight rows is
// decoded once into int8 (the integers the scales multiply) and multiplied with every row of x
// in register tiles of 4 weight rows x 4 rows of x, two blocks per 512-bit vector. Weights are
// decoded 32 rows at a time (about 100 KB at 1536 inputs: they stay in L2 while every tile of 4
// rows of x, from L1, passes over them), so each block is decoded once per call.
//
// vpdpbusd wants one unsigned operand: x goes in as q + 128 (unsigned), the weights as their
// signed integers, and the extra 128 * sum(w) of every 4-element lane is taken off by starting
// the accumulator at -128 * sum(w) (computed once per block pair and tile). The block sums are
// exact int32 as in q8_tile; each is scaled by d_w * d_x (Q6_K: its two half scales on their lanes)
// and summed in fp32; the minima of Q4_1, Q5_1, Q4_K and Q5_K add sum_b m_w[b] * s_x[b] at the end.
// No include guard: one inclusion, in the AVX-512 translation unit.

constexpr int kPanelW = 4;            // weight rows per register tile
constexpr int kPanelX = 4;            // rows of x per register tile
constexpr int64_t kPanelBlock = 32;   // weight rows decoded together
constexpr int64_t kPanelMinRows = 8;  // fewer rows: q8_tile

// Scales are kept 4 per block pair (per block, its first and second half: Q6_K's two scales, the
// one scale twice otherwise) and spread over the 16 int32 lanes in registers (lanes 4h..4h+3 sum
// elements 16h..16h+15 of the pair), so the tiles read 16 bytes of scales per 64 weights.
SLLM_VEC_INLINE __m512 spread_scales(const float* s4) {
  const __m512i idx = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_loadu_ps(s4)));
}

// Rows of x ready for the tiles: u8 = q + 128 per element, the scales as spread_scales reads
// them, rows padded to whole tiles with zeros.
struct PanelX {
  int64_t np = 0;  // block pairs per row (blocks rounded up to even)
  std::vector<uint8_t> xu;
  std::vector<float> dxe;
  void fill(const int8_t* qx, const float* dx, int64_t rows, int64_t nb) {
    np = (nb + 1) / 2;
    const int64_t padded = (rows + kPanelX - 1) / kPanelX * kPanelX;
    xu.assign(static_cast<size_t>(padded * np * 64), 0);
    dxe.assign(static_cast<size_t>(padded * np * 4), 0.f);
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const __m256i q =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx + (r * nb + b) * 32));
        _mm256_storeu_si256(
            reinterpret_cast<__m256i*>(&xu[static_cast<size_t>(r * np * 64 + b * 32)]),
            _mm256_xor_si256(q, flip));
        dxe[static_cast<size_t>(r * np * 4 + b * 2)] = dx[r * nb + b];
        dxe[static_cast<size_t>(r * np * 4 + b * 2 + 1)] = dx[r * nb + b];
      }
  }
};

// kPanelBlock weight rows decoded: int8 values, scales as PanelX, and the minima per block (types
// with a minimum). Rows past the end stay zero.
struct PanelW {
  int64_t np = 0, nb = 0;
  std::vector<int8_t> wq;
  std::vector<float> dwe, mins;
  void resize(int64_t nblocks) {
    nb = nblocks;
    np = (nb + 1) / 2;
    wq.resize(static_cast<size_t>(kPanelBlock * np * 64));
    dwe.resize(static_cast<size_t>(kPanelBlock * np * 4));
    mins.resize(static_cast<size_t>(kPanelBlock * nb));
  }
  template <int T>
  void fill(const GgufView& w, int64_t o, int64_t n) {
    std::fill(wq.begin(), wq.end(), 0);
    std::fill(dwe.begin(), dwe.end(), 0.f);
    std::fill(mins.begin(), mins.end(), 0.f);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* row = w.blocks + (o + i) * w.row_bytes();
      for (int64_t b = 0; b < nb; ++b) {
        const Block k = block_at<T>(row, b);
        const __m256i v = block_bytes<T>(k);
        const size_t e = static_cast<size_t>(i * np * 64 + b * 32);
        const size_t l = static_cast<size_t>(i * np * 4 + b * 2);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&wq[e]), v);
        dwe[l] = k.d;
        dwe[l + 1] = two_scales(T) ? k.d2 : k.d;
        if constexpr (has_min(T)) mins[static_cast<size_t>(i * nb + b)] = k.m;
      }
    }
  }
};

// y rows [r, r + nx) x outputs [o, o + nw) from rows [w0, w0 + 4) of the panel and the prepared
// rows of x (row r of px is row r of sx and y); sx and the bias as q8_tile's.
template <int T>
void panel_tile(const PanelW& pw, int64_t w0, const PanelX& px, const float* sx, int64_t nb,
                const float* bias, float* y, int64_t out, int64_t r, int64_t nx, int64_t o,
                int64_t nw) {
  __m512 acc[kPanelW][kPanelX];
#pragma GCC unroll 4
  for (int i = 0; i < kPanelW; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kPanelX; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t np = pw.np;
  const int8_t* wq = pw.wq.data() + w0 * np * 64;
  const float* dw = pw.dwe.data() + w0 * np * 4;
  const uint8_t* xu = px.xu.data() + r * np * 64;
  const float* dx = px.dxe.data() + r * np * 4;
  const __m512i k128 = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t p = 0; p < np; ++p) {
    __m512i wv[kPanelW], sv[kPanelW];
    __m512 dv[kPanelW];
#pragma GCC unroll 4
    for (int i = 0; i < kPanelW; ++i) {
      wv[i] = _mm512_loadu_si512(wq + (i * np + p) * 64);
      // -128 * (the sum of each lane's 4 weights): takes off what x + 128 adds
      sv[i] = _mm512_sub_epi32(_mm512_setzero_si512(),
                               _mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, wv[i]));
      dv[i] = spread_scales(dw + (i * np + p) * 4);
    }
#pragma GCC unroll 4
    for (int j = 0; j < kPanelX; ++j) {
      const __m512i xv = _mm512_loadu_si512(xu + (j * np + p) * 64);
      const __m512 dxv = spread_scales(dx + (j * np + p) * 4);
#pragma GCC unroll 4
      for (int i = 0; i < kPanelW; ++i) {
        const __m512i s = _mm512_dpbusd_epi32(sv[i], xv, wv[i]);
        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dv[i], dxv), acc[i][j]);
      }
    }
  }
  for (int i = 0; i < nw; ++i)
    for (int j = 0; j < nx; ++j) {
      float v = _mm512_reduce_add_ps(acc[i][j]);
      if constexpr (has_min(T)) {
        const float* m = pw.mins.data() + (w0 + i) * nb;
        const float* s = sx + (r + j) * nb;
        __m512 t = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b += 16) {
          const __mmask16 k = b + 16 <= nb ? 0xFFFF : static_cast<__mmask16>((1u << (nb - b)) - 1);
          t = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, m + b), _mm512_maskz_loadu_ps(k, s + b), t);
        }
        v += _mm512_reduce_add_ps(t);
      }
      y[(r + j) * out + o + i] = bias ? v + bias[o + i] : v;
    }
}

template <int T>
void q8_panel(const GgufView& w, int64_t rows, const int8_t* qx, const float* dx, const float* sx,
              const float* bias, float* y, int64_t o0, int64_t o1) {
  const int64_t nb = w.in / 32;
  PanelX px;
  px.fill(qx, dx, rows, nb);
  PanelW pw;
  pw.resize(nb);
  for (int64_t ob = o0; ob < o1; ob += kPanelBlock) {
    const int64_t bn = std::min(kPanelBlock, o1 - ob);
    pw.fill<T>(w, ob, bn);
    for (int64_t r = 0; r < rows; r += kPanelX)
      for (int64_t w0 = 0; w0 < bn; w0 += kPanelW)
        panel_tile<T>(pw, w0, px, sx, nb, bias, y, w.out, r, std::min<int64_t>(kPanelX, rows - r),
                      ob + w0, std::min<int64_t>(kPanelW, bn - w0));
  }
}

// The f32 path over many rows of x: kPanelBlock weight rows decoded to fp32 at a time (decode<T>,
// the dequantizers' values; 64-byte aligned for its stores), multiplied with x in register tiles
// of 4 weight rows x 4 rows of x, 16 inputs per step. A partial tile repeats its last row and
// drops the copies' results.
template <int T>
void f32_panel(const GgufView& w, int64_t rows, const float* x, const float* bias, float* y,
               int64_t o0, int64_t o1) {
  const int64_t in = w.in, nb = in / 32;
  const size_t bytes = static_cast<size_t>(kPanelBlock * in) * sizeof(float);
  std::unique_ptr<float, decltype(&std::free)> buf(
      static_cast<float*>(std::aligned_alloc(64, bytes)), &std::free);
  float* wf = buf.get();
  for (int64_t ob = o0; ob < o1; ob += kPanelBlock) {
    const int64_t bn = std::min(kPanelBlock, o1 - ob);
    for (int64_t i = 0; i < bn; ++i) {
      const uint8_t* row = w.blocks + (ob + i) * w.row_bytes();
      for (int64_t b = 0; b < nb; ++b) decode<T>(block_at<T>(row, b), wf + i * in + b * 32);
    }
    for (int64_t r = 0; r < rows; r += kPanelX) {
      const int64_t nx = std::min<int64_t>(kPanelX, rows - r);
      const float* xr[kPanelX];
      for (int j = 0; j < kPanelX; ++j) xr[j] = x + (r + std::min<int64_t>(j, nx - 1)) * in;
      for (int64_t w0 = 0; w0 < bn; w0 += kPanelW) {
        const int64_t nw = std::min<int64_t>(kPanelW, bn - w0);
        const float* wr[kPanelW];
        for (int i = 0; i < kPanelW; ++i) wr[i] = wf + (w0 + std::min<int64_t>(i, nw - 1)) * in;
        __m512 acc[kPanelW][kPanelX];
#pragma GCC unroll 4
        for (int i = 0; i < kPanelW; ++i)
#pragma GCC unroll 4
          for (int j = 0; j < kPanelX; ++j) acc[i][j] = _mm512_setzero_ps();
        for (int64_t k = 0; k < in; k += 16) {
          __m512 wv[kPanelW];
#pragma GCC unroll 4
          for (int i = 0; i < kPanelW; ++i) wv[i] = _mm512_load_ps(wr[i] + k);
#pragma GCC unroll 4
          for (int j = 0; j < kPanelX; ++j) {
            const __m512 xv = _mm512_loadu_ps(xr[j] + k);
#pragma GCC unroll 4
            for (int i = 0; i < kPanelW; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
          }
        }
        for (int i = 0; i < nw; ++i)
          for (int j = 0; j < nx; ++j) {
            const float v = _mm512_reduce_add_ps(acc[i][j]);
            const int64_t o = ob + w0 + i;
            y[(r + j) * w.out + o] = bias ? v + bias[o] : v;
          }
      }
    }
  }
}
