// The q8 path over many rows of x (prefill), AVX-512 VNNI only: included by gguf_body.h inside
// its namespace when SLLM_GGUF_PANEL is defined (gguf_isa_avx512.cpp). The 4-row tiles of
// q8_tile decode every weight block again for each 4 rows of x; here a panel of 4 weight rows is
// decoded once into int8 (the integers the scales multiply) and multiplied with every row of x
// in register tiles of 4 weight rows x 4 rows of x, two blocks per 512-bit vector.
//
// vpdpbusd wants one unsigned operand: x goes in as q + 128 (unsigned), the weights as their
// signed integers, and the extra 128 * sum(w) of every 4-element lane is taken off by starting
// the accumulator at -128 * sum(w) (computed once per weight block). The block sums are exact
// int32 as in q8_tile; each is scaled by d_w * d_x (Q6_K: its two half scales on their lanes) and
// summed in fp32; the minima of Q4_1, Q5_1, Q4_K and Q5_K add sum_b m_w[b] * s_x[b] at the end.
// No include guard: one inclusion, in the AVX-512 translation unit.

constexpr int kPanelW = 4;            // weight rows per register tile
constexpr int kPanelX = 4;            // rows of x per register tile
constexpr int64_t kPanelChunk = 64;   // rows of x prepared at a time (stay in L2)
constexpr int64_t kPanelMinRows = 8;  // fewer rows: q8_tile

// Rows of x ready for the tiles: u8 = q + 128 per element, per block pair p the 16 lane scales
// (lanes 0..7 dx of block 2p, 8..15 of block 2p + 1), rows padded to whole tiles with zeros.
struct PanelX {
  int64_t np = 0;  // block pairs per row (blocks rounded up to even)
  std::vector<uint8_t> xu;
  std::vector<float> dxe;
  void fill(const int8_t* qx, const float* dx, int64_t rows, int64_t nb) {
    np = (nb + 1) / 2;
    const int64_t padded = (rows + kPanelX - 1) / kPanelX * kPanelX;
    xu.assign(static_cast<size_t>(padded * np * 64), 0);
    dxe.assign(static_cast<size_t>(padded * np * 16), 0.f);
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < nb; ++b) {
        const __m256i q =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qx + (r * nb + b) * 32));
        _mm256_storeu_si256(
            reinterpret_cast<__m256i*>(&xu[static_cast<size_t>(r * np * 64 + b * 32)]),
            _mm256_xor_si256(q, flip));
        _mm256_storeu_ps(&dxe[static_cast<size_t>(r * np * 16 + b * 8)],
                         _mm256_set1_ps(dx[r * nb + b]));
      }
  }
};

// kPanelW weight rows decoded: int8 values, lane scales as PanelX, the -128 * sum(w) lane starts,
// and the minima per block (types with a minimum). Rows past the end stay zero.
struct PanelW {
  int64_t np = 0, nb = 0;
  std::vector<int8_t> wq;
  std::vector<float> dwe, mins;
  std::vector<int32_t> start;
  void resize(int64_t nblocks) {
    nb = nblocks;
    np = (nb + 1) / 2;
    wq.resize(static_cast<size_t>(kPanelW * np * 64));
    dwe.resize(static_cast<size_t>(kPanelW * np * 16));
    start.resize(static_cast<size_t>(kPanelW * np * 16));
    mins.resize(static_cast<size_t>(kPanelW * nb));
  }
  template <int T>
  void fill(const GgufView& w, int64_t o, int64_t n) {
    std::fill(wq.begin(), wq.end(), 0);
    std::fill(dwe.begin(), dwe.end(), 0.f);
    std::fill(start.begin(), start.end(), 0);
    std::fill(mins.begin(), mins.end(), 0.f);
    const __m256i k128 = _mm256_set1_epi8(static_cast<char>(0x80));
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* row = w.blocks + (o + i) * w.row_bytes();
      for (int64_t b = 0; b < nb; ++b) {
        const Block k = block_at<T>(row, b);
        const __m256i v = block_bytes<T>(k);
        const size_t e = static_cast<size_t>(i * np * 64 + b * 32);
        const size_t l = static_cast<size_t>(i * np * 16 + b * 8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&wq[e]), v);
        const __m256i s128 = _mm256_dpbusd_epi32(_mm256_setzero_si256(), k128, v);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(&start[l]),
                            _mm256_sub_epi32(_mm256_setzero_si256(), s128));
        const __m256 d = two_scales(T) ? _mm256_set_m128(_mm_set1_ps(k.d2), _mm_set1_ps(k.d))
                                       : _mm256_set1_ps(k.d);
        _mm256_storeu_ps(&dwe[l], d);
        if constexpr (has_min(T)) mins[static_cast<size_t>(i * nb + b)] = k.m;
      }
    }
  }
};

// y rows [r, r + nx) x outputs [o, o + nw) from the panel and the prepared rows of x (row r of
// px is row r of sx and y); sx and the bias as q8_tile's.
template <int T>
void panel_tile(const PanelW& pw, const PanelX& px, const float* sx, int64_t nb, const float* bias,
                float* y, int64_t out, int64_t r, int64_t nx, int64_t o, int64_t nw) {
  __m512 acc[kPanelW][kPanelX];
#pragma GCC unroll 4
  for (int i = 0; i < kPanelW; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < kPanelX; ++j) acc[i][j] = _mm512_setzero_ps();
  const int64_t np = pw.np;
  const int8_t* wq = pw.wq.data();
  const int32_t* st = pw.start.data();
  const float* dw = pw.dwe.data();
  const uint8_t* xu = px.xu.data() + r * np * 64;
  const float* dx = px.dxe.data() + r * np * 16;
  for (int64_t p = 0; p < np; ++p) {
    __m512i wv[kPanelW], sv[kPanelW];
    __m512 dv[kPanelW];
#pragma GCC unroll 4
    for (int i = 0; i < kPanelW; ++i) {
      wv[i] = _mm512_loadu_si512(wq + (i * np + p) * 64);
      sv[i] = _mm512_loadu_si512(st + (i * np + p) * 16);
      dv[i] = _mm512_loadu_ps(dw + (i * np + p) * 16);
    }
#pragma GCC unroll 4
    for (int j = 0; j < kPanelX; ++j) {
      const __m512i xv = _mm512_loadu_si512(xu + (j * np + p) * 64);
      const __m512 dxv = _mm512_loadu_ps(dx + (j * np + p) * 16);
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
        const float* m = pw.mins.data() + i * nb;
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
  PanelW pw;
  pw.resize(nb);
  for (int64_t r0 = 0; r0 < rows; r0 += kPanelChunk) {
    const int64_t rn = std::min(kPanelChunk, rows - r0);
    px.fill(qx + r0 * w.in, dx + r0 * nb, rn, nb);
    for (int64_t o = o0; o < o1; o += kPanelW) {
      const int64_t nw = std::min<int64_t>(kPanelW, o1 - o);
      pw.fill<T>(w, o, nw);
      for (int64_t r = 0; r < rn; r += kPanelX)
        panel_tile<T>(pw, px, sx + r0 * nb, nb, bias, y + r0 * w.out, w.out, r,
                      std::min<int64_t>(kPanelX, rn - r), o, nw);
    }
  }
}
