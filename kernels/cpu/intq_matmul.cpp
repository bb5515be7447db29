// Integer-quantized matmul entry points: pick the ISA at run time (and the widest one whose
// vectors tile the groups) and call its instantiation of the shared bodies (intq_body.h,
// int8_body.h, through isa_kernels.h).
#include "kernels/cpu/intq_matmul.h"

#include <vector>

#include "kernels/cpu/isa_kernels.h"

namespace sllm::kernels::cpu {

namespace isa {

const float* intq_split_x(const float* x, int64_t n, int chunk) {
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

const float* intq_group_sums(const IntQView& w, const float* x, int64_t rows) {
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

}  // namespace isa

using isa::pick;

namespace {

// The widest ISA not above p whose vectors tile every group: weights per SIMD chunk are 32 / 16
// (storage 4, AVX-512 / AVX2) and 16 / 8 (storage 8).
Isa fit(Isa p, const IntQView& w) {
  auto tiles = [&](int64_t n) { return w.in % n == 0 && w.group_size % n == 0; };
  const int64_t wide = w.storage_bits == 4 ? 32 : 16;
  if (p == Isa::avx512 && !tiles(wide)) p = Isa::avx2;
  if (p == Isa::avx2 && !tiles(wide / 2)) p = Isa::scalar;
  return p;
}

}  // namespace

bool intq_has_avx2() { return isa::cpu_has_avx2(); }
bool intq_has_avx512() { return isa::cpu_has_avx512(); }

void intq_dequantize_f32(const IntQView& w, const int64_t* perm, int64_t o0, int64_t o1, float* out,
                         IntQSimd simd) {
  switch (fit(pick(simd), w)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return isa::intq_dequant<Isa::avx512>(w, perm, o0, o1, out);
    case Isa::avx2:
      return isa::intq_dequant<Isa::avx2>(w, perm, o0, o1, out);
#endif
    default:
      return isa::intq_dequant<Isa::scalar>(w, perm, o0, o1, out);
  }
}

void intq_gemv_f32(const IntQView& w, const float* x, const float* bias, float* y, int64_t o0,
                   int64_t o1, IntQSimd simd) {
  if (o0 >= o1) return;
  switch (fit(pick(simd), w)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return isa::intq_gemv<Isa::avx512>(w, x, bias, y, o0, o1);
    case Isa::avx2:
      return isa::intq_gemv<Isa::avx2>(w, x, bias, y, o0, o1);
#endif
    default:
      return isa::intq_gemv<Isa::scalar>(w, x, bias, y, o0, o1);
  }
}

void intq_gemm_small_f32(const IntQView& w, int64_t rows, const float* x, const float* bias,
                         float* y, int64_t o0, int64_t o1, IntQSimd simd) {
  if (rows <= 0 || o0 >= o1) return;
  switch (fit(pick(simd), w)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return isa::intq_gemm_small<Isa::avx512>(w, rows, x, bias, y, o0, o1);
    case Isa::avx2:
      return isa::intq_gemm_small<Isa::avx2>(w, rows, x, bias, y, o0, o1);
#endif
    default:
      return isa::intq_gemm_small<Isa::scalar>(w, rows, x, bias, y, o0, o1);
  }
}

// ---- LLM.int8(): the row quantizer and column scan have no AVX-512 form (AVX2 on AVX-512) ----

int64_t int8_outlier_columns(const float* x, int64_t rows, int64_t in, float threshold,
                             int64_t* idx) {
  std::vector<float> m(static_cast<size_t>(in), 0.f);
  const bool simd = intq_has_avx2();
  for (int64_t r = 0; r < rows; ++r) {
#ifdef SLLM_CPU_X86
    if (simd) {
      isa::int8_column_absmax<Isa::avx2>(x + r * in, in, m.data());
      continue;
    }
#endif
    isa::int8_column_absmax<Isa::scalar>(x + r * in, in, m.data());
  }
  int64_t n = 0;
  for (int64_t j = 0; j < in; ++j)
    if (m[j] >= threshold) idx[n++] = j;
  return n;
}

void int8_quantize_rows(const float* x, int64_t in, float threshold, const int64_t* outlier_idx,
                        int64_t n_outliers, int8_t* q, float* sx, int64_t r0, int64_t r1,
                        IntQSimd simd, bool bnb) {
  const bool vec = pick(simd) != Isa::scalar;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * in;
    int8_t* qr = q + r * in;
#ifdef SLLM_CPU_X86
    const float m = vec ? isa::int8_row_absmax<Isa::avx2>(xr, in, threshold)
                        : isa::int8_row_absmax<Isa::scalar>(xr, in, threshold);
#else
    const float m = isa::int8_row_absmax<Isa::scalar>(xr, in, threshold);
#endif
    sx[r] = m;
    if (m == 0.f) {
      std::memset(qr, 0, static_cast<size_t>(in));
      continue;
    }
    const float inv = bnb ? (1.f / m) * 127.f : 127.f / m;
#ifdef SLLM_CPU_X86
    if (vec)
      isa::int8_quantize_row<Isa::avx2>(xr, in, inv, qr);
    else
#endif
      isa::int8_quantize_row<Isa::scalar>(xr, in, inv, qr);
    for (int64_t k = 0; k < n_outliers; ++k) qr[outlier_idx[k]] = 0;
  }
}

void int8_gemm_small(const int8_t* w, const float* scb, int64_t out, int64_t in, int64_t rows,
                     const int8_t* qx, const float* sx, const float* bias, float* y, int64_t o0,
                     int64_t o1, IntQSimd simd, bool bnb) {
  if (rows <= 0 || o0 >= o1) return;
  const float dq = int8_dequant_const(bnb);
  thread_local std::vector<int16_t> x16;
  x16.resize(static_cast<size_t>(rows * in));
  for (int64_t i = 0; i < rows * in; ++i) x16[i] = qx[i];
  switch (pick(simd)) {
#ifdef SLLM_CPU_X86
    case Isa::avx512:
      return isa::int8_gemm<Isa::avx512>(w, scb, out, in, rows, x16.data(), qx, sx, bias, y, o0, o1,
                                         dq);
    case Isa::avx2:
      return isa::int8_gemm<Isa::avx2>(w, scb, out, in, rows, x16.data(), qx, sx, bias, y, o0, o1,
                                       dq);
#endif
    default:
      return isa::int8_gemm<Isa::scalar>(w, scb, out, in, rows, x16.data(), qx, sx, bias, y, o0, o1,
                                         dq);
  }
}

void int8_dequantize_acc(const int32_t* acc, int64_t out, const float* sx, const float* scb,
                         const float* bias, float* y, int64_t r0, int64_t r1, bool bnb) {
  const float dq = int8_dequant_const(bnb);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t o = 0; o < out; ++o) {
      const float v = static_cast<float>(acc[r * out + o]) * (sx[r] * scb[o]) * dq;
      y[r * out + o] = bias ? v + bias[o] : v;
    }
}

void int8_outlier_add(const int8_t* w, const float* scb, int64_t out, int64_t in, int64_t rows,
                      const float* x, const int64_t* idx, int64_t n_idx, float* y, int64_t o0,
                      int64_t o1, bool bnb) {
  if (bnb) {
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t r = 0; r < rows; ++r) {
        float acc = 0.f;
        for (int64_t k = 0; k < n_idx; ++k)
          acc +=
              x[r * in + idx[k]] * (static_cast<float>(w[o * in + idx[k]]) * scb[o] * kBnbInv127);
        y[r * out + o] += acc;
      }
    return;
  }
  for (int64_t o = o0; o < o1; ++o)
    for (int64_t k = 0; k < n_idx; ++k) {
      const int64_t j = idx[k];
      const float wv = static_cast<float>(w[o * in + j]) * scb[o] / 127.f;
      for (int64_t r = 0; r < rows; ++r) y[r * out + o] += x[r * in + j] * wv;
    }
}

}  // namespace sllm::kernels::cpu
