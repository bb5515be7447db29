#include "kernels/cpu/gguf_quant.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "kernels/cpu/gguf_dequant.h"

namespace sllm::kernels::cpu {
namespace {

inline uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
inline float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
// Little-endian store: blocks sit at arbitrary byte offsets.
inline void st16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xff);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// The 4-bit codes of a 32-element block, min(15, (int8)v(j)), packed as ggml does: element j in
// the low nibble of byte j, element j + 16 in its high nibble.
template <typename F>
inline void pack_nibbles(uint8_t* qs, F v) {
  for (int j = 0; j < 16; ++j) {
    const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(v(j))));
    const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(v(j + 16))));
    qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
  }
}

// The 5-bit codes of a 32-element block, min(31, (int8)v(j)): low nibbles as pack_nibbles, the
// fifth bits in a little-endian 32-bit mask (bit j for element j).
template <typename F>
inline void pack_5bit(uint8_t* qh, uint8_t* qs, F v) {
  uint32_t h = 0;
  int q[32];
  for (int j = 0; j < 32; ++j) {
    q[j] = std::min(31, static_cast<int>(static_cast<int8_t>(v(j))));
    h |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
  }
  for (int j = 0; j < 16; ++j)
    qs[j] = static_cast<uint8_t>((q[j] & 0xf) | ((q[j + 16] & 0xf) << 4));
  for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(h >> (8 * k));
}

// The element of largest magnitude (the first on ties), with its sign.
inline float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j)
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  return max;
}

inline void min_max(const float* x, int n, float& min, float& max) {
  min = FLT_MAX;
  max = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
}

}  // namespace

uint16_t fp32_to_fp16(float f) {
  uint32_t u = bits_of(f);
  const auto sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x47800000u)  // |f| >= 65536 (inf), or NaN
    return static_cast<uint16_t>(sign |
                                 (u > 0x7f800000u ? 0x7e00u | ((u >> 13) & 0x3ffu) : 0x7c00u));
  if (u < 0x38800000u) {
    // Subnormal or zero half: adding 0.5 (2^-1) aligns the float's mantissa so that the hardware
    // addition rounds to nearest even at the half's last subnormal bit (2^-24).
    const float magic = float_of(126u << 23);
    return static_cast<uint16_t>(sign | (bits_of(float_of(u) + magic) - (126u << 23)));
  }
  // Normal half: rebias the exponent, round to nearest even on the 13 dropped bits (a carry into
  // the exponent is correct, up to inf).
  const uint32_t odd = (u >> 13) & 1u;
  u += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu + odd;
  return static_cast<uint16_t>(sign | (u >> 13));
}

void f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
  auto* p = reinterpret_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) st16(p + 2 * i, fp32_to_fp16(src[i]));
}

namespace {

// 32-element blocks, d = (element of largest magnitude) / div, codes of x / d + bias after d.
template <typename Pack>
void quant_sym(const float* x, void* dst, int64_t n, int64_t bytes, float div, float bias,
               Pack pack) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / 32; ++i, x += 32, b += bytes) {
    const float d = signed_absmax(x, 32) / div;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(b, fp32_to_fp16(d));
    pack(b + 2, [&](int j) { return x[j] * id + bias; });
  }
}

// 32-element blocks, d = (max - min) / levels and m = min, codes of (x - m) / d + 0.5 after them.
template <typename Pack>
void quant_affine(const float* x, void* dst, int64_t n, int64_t bytes, float levels, Pack pack) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / 32; ++i, x += 32, b += bytes) {
    float min, max;
    min_max(x, 32, min, max);
    const float d = (max - min) / levels;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(b, fp32_to_fp16(d));
    st16(b + 2, fp32_to_fp16(min));
    pack(b + 4, [&](int j) { return (x[j] - min) * id + 0.5f; });
  }
}

const auto kPack4 = [](uint8_t* p, auto v) { pack_nibbles(p, v); };
const auto kPack5 = [](uint8_t* p, auto v) { pack_5bit(p, p + 4, v); };

}  // namespace

void quant_q4_0(const float* x, void* dst, int64_t n) {
  quant_sym(x, dst, n, kQ4_0Bytes, -8.0f, 8.5f, kPack4);
}
void quant_q4_1(const float* x, void* dst, int64_t n) {
  quant_affine(x, dst, n, kQ4_1Bytes, 15.0f, kPack4);
}
void quant_q5_0(const float* x, void* dst, int64_t n) {
  quant_sym(x, dst, n, kQ5_0Bytes, -16.0f, 16.5f, kPack5);
}
void quant_q5_1(const float* x, void* dst, int64_t n) {
  quant_affine(x, dst, n, kQ5_1Bytes, 31.0f, kPack5);
}

void quant_q8_0(const float* x, void* dst, int64_t n) {
  auto* b = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / kQK8_0; ++i, x += kQK8_0, b += kQ8_0Bytes) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(b, fp32_to_fp16(d));
    for (int j = 0; j < kQK8_0; ++j) {
      const float q = std::round(x[j] * id);  // half away from zero, as roundf
      b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
    }
  }
}

// ---- K-quants: 256-element super-blocks, ggml's reference quantization (no importance matrix).
namespace {

// ggml's nearest_int: round to nearest, ties to even, by adding 1.5 * 2^23 (|f| < 2^22).
inline int nearest_int(float f) {
  return static_cast<int>(bits_of(f + 12582912.0f) & 0x7fffffu) - 0x400000;
}
inline int clamp_int(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// A scale and a min (<= 0) for n values coded as q in [0, nmax], x ~ scale * q + min: starting
// from the plain min/max grid, tries the grids of (nmax + rmin + rdelta * step) / (max - min)
// for step 0..nstep, each refit by weighted least squares, and keeps the one with the smallest
// weighted squared error. Returns the scale; *neg_min = -min; L receives the codes.
float fit_scale_min(int n, int nmax, const float* x, const float* w, uint8_t* L, float* neg_min,
                    float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::memset(L, 0, static_cast<size_t>(n));
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best += w[i] * (diff * diff);
  }
  uint8_t cand[32];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
      cand[i] = static_cast<uint8_t>(l);
      sum_l += w[i] * l;
      sum_l2 += w[i] * l * l;
      sum_xl += w[i] * l * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * cand[i] + this_min - x[i];
      err += w[i] * (diff * diff);
    }
    if (err < best) {
      std::memcpy(L, cand, static_cast<size_t>(n));
      best = err;
      scale = this_scale;
      min = this_min;
    }
  }
  *neg_min = -min;
  return scale;
}

// Q4_K / Q5_K common part: per 32-element sub-block a fitted scale and min, both quantized to 6
// bits against the super-block's fp16 d = max scale / 63 and dmin = max min / 63 (written to
// b[0..15]: d, dmin, the 12 packed scale bytes); then every element re-coded against its
// sub-block's quantized scale and min into L (0..nmax).
void quant_scale_min_k(const float* x, int nmax, float rmin, int nstep, uint8_t* b, uint8_t* L) {
  float scales[8], mins[8], w[32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t ls[8], lm[8];
  uint8_t* sc = b + 4;
  for (int j = 0; j < 8; ++j) {
    ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
  }
  // 6-bit packing: sub-blocks 0..3 in the low 6 bits of bytes 0..3 (scales) and 4..7 (mins);
  // 4..7 as nibbles in bytes 8..11 with their top two bits in the spare bits of bytes 0..7.
  for (int j = 0; j < 4; ++j) {
    sc[j] = static_cast<uint8_t>(ls[j] | ((ls[j + 4] >> 4) << 6));
    sc[j + 4] = static_cast<uint8_t>(lm[j] | ((lm[j + 4] >> 4) << 6));
    sc[j + 8] = static_cast<uint8_t>((ls[j + 4] & 0xf) | ((lm[j + 4] & 0xf) << 4));
  }
  const uint16_t dh = fp32_to_fp16(max_scale / 63.f), mh = fp32_to_fp16(max_min / 63.f);
  st16(b, dh);
  st16(b + 2, mh);
  for (int j = 0; j < 8; ++j) {
    const float d = fp16_to_fp32(dh) * ls[j];
    if (d == 0.0f) continue;  // the fit's codes stay
    const float dm = fp16_to_fp32(mh) * lm[j];
    for (int i = 0; i < 32; ++i)
      L[32 * j + i] =
          static_cast<uint8_t>(clamp_int(nearest_int((x[32 * j + i] + dm) / d), 0, nmax));
  }
}

// Scale of n values coded as q in [-nmax, nmax - 1], weighted by x^2: the grid -nmax / max refit
// by least squares, then the grids -(nmax + 0.1 * is) / max, is = -9..9, kept when they fit
// better. L receives q + nmax.
float fit_scale_sym(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < 1e-15f) {
    std::memset(L, 0, static_cast<size_t>(n));
    return 0.0f;
  }
  auto sums = [&](float iscale, float& sumlx, float& suml2) {
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sumlx += w * x[i] * l;
      suml2 += w * l * l;
    }
  };
  auto codes = [&](float iscale) {
    for (int i = 0; i < n; ++i)
      L[i] = static_cast<int8_t>(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
  };
  float iscale = -nmax / max, sumlx, suml2;
  codes(iscale);
  sums(iscale, sumlx, suml2);
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(nmax + 0.1f * is) / max;
    sums(iscale, sumlx, suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      codes(iscale);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

}  // namespace

void quant_q4_k(const float* x, void* dst, int64_t n) {
  auto* b = static_cast<uint8_t*>(dst);
  uint8_t L[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K, b += kQ4_KBytes) {
    quant_scale_min_k(x, 15, -1.0f, 20, b, L);
    uint8_t* q = b + 16;  // 64-element groups: the first 32 in low nibbles, the next in high
    for (int j = 0; j < kQK_K; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

void quant_q5_k(const float* x, void* dst, int64_t n) {
  auto* b = static_cast<uint8_t*>(dst);
  uint8_t L[kQK_K];
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K, b += kQ5_KBytes) {
    quant_scale_min_k(x, 31, -0.5f, 15, b, L);
    uint8_t* qh = b + 16;  // bit 2g (2g + 1) of byte l: the fifth bit of element 64g + l (+ 32)
    uint8_t* ql = b + 48;
    std::memset(qh, 0, 32);
    for (int g = 0; g < 4; ++g, ql += 32)
      for (int l = 0; l < 32; ++l) {
        const int a = L[64 * g + l], c = L[64 * g + l + 32];
        qh[l] = static_cast<uint8_t>(qh[l] | ((a >> 4) << (2 * g)) | ((c >> 4) << (2 * g + 1)));
        ql[l] = static_cast<uint8_t>((a & 0xf) | ((c & 0xf) << 4));
      }
  }
}

void quant_q6_k(const float* x, void* dst, int64_t n) {
  auto* b = static_cast<uint8_t*>(dst);
  int8_t L[kQK_K];
  float scales[16];
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K, b += kQ6_KBytes) {
    float max_scale = 0, max_abs = 0;
    for (int j = 0; j < 16; ++j) {
      scales[j] = fit_scale_sym(16, 32, x + 16 * j, L + 16 * j);
      if (std::fabs(scales[j]) > max_abs) {
        max_abs = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    std::memset(b, 0, static_cast<size_t>(kQ6_KBytes));
    if (max_abs < 1e-15f) continue;  // all zero
    uint8_t *ql = b, *qh = b + 128;
    auto* sc = reinterpret_cast<int8_t*>(b + 192);
    const float iscale = -128.f / max_scale;
    const uint16_t dh = fp32_to_fp16(1 / iscale);
    st16(b + 208, dh);
    for (int j = 0; j < 16; ++j)
      sc[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    for (int j = 0; j < 16; ++j) {
      const float d = fp16_to_fp32(dh) * sc[j];
      if (d == 0.0f) continue;  // the fit's codes stay
      for (int l = 0; l < 16; ++l)
        L[16 * j + l] =
            static_cast<int8_t>(32 + clamp_int(nearest_int(x[16 * j + l] / d), -32, 31));
    }
    // Per 128 elements: low nibbles of elements l and l + 64 in ql[l], of l + 32 and l + 96 in
    // ql[l + 32]; their top two bits in qh[l] (2 bits each, in that order: l, +32, +64, +96).
    for (int h = 0; h < 2; ++h, ql += 64, qh += 32) {
      const int8_t* q = L + 128 * h;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((q[l] & 0xf) | ((q[l + 64] & 0xf) << 4));
        ql[l + 32] = static_cast<uint8_t>((q[l + 32] & 0xf) | ((q[l + 96] & 0xf) << 4));
        qh[l] = static_cast<uint8_t>((q[l] >> 4) | ((q[l + 32] >> 4) << 2) |
                                     ((q[l + 64] >> 4) << 4) | ((q[l + 96] >> 4) << 6));
      }
    }
  }
}

namespace {

void copy_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}
void to_f16(const float* src, void* dst, int64_t n) {
  f32_to_f16(src, static_cast<uint16_t*>(dst), n);
}

struct Writer {
  uint32_t type;
  int64_t block, bytes;  // elements and bytes of one block
  void (*fn)(const float*, void*, int64_t);
};
constexpr Writer kWriters[] = {{0, 1, 4, copy_f32},
                               {1, 1, 2, to_f16},
                               {2, kQK4_0, kQ4_0Bytes, quant_q4_0},
                               {3, kQK4_1, kQ4_1Bytes, quant_q4_1},
                               {6, kQK5_0, kQ5_0Bytes, quant_q5_0},
                               {7, kQK5_1, kQ5_1Bytes, quant_q5_1},
                               {8, kQK8_0, kQ8_0Bytes, quant_q8_0},
                               {12, kQK_K, kQ4_KBytes, quant_q4_k},
                               {13, kQK_K, kQ5_KBytes, quant_q5_k},
                               {14, kQK_K, kQ6_KBytes, quant_q6_k}};

const Writer* writer(uint32_t type) {
  for (const auto& w : kWriters)
    if (w.type == type) return &w;
  return nullptr;
}

}  // namespace

int64_t quant_bytes(uint32_t type, int64_t n) {
  const auto* w = writer(type);
  return w ? n / w->block * w->bytes : -1;
}

bool quantize(uint32_t type, const float* src, void* dst, int64_t n) {
  const auto* w = writer(type);
  if (w) w->fn(src, dst, n);
  return w != nullptr;
}

}  // namespace sllm::kernels::cpu
