#include "kernels/cpu/fused.h"

#include <cmath>

#include "kernels/cpu/gguf_dequant.h"
#include "kernels/cpu/vec.h"

namespace sllm::kernels::cpu {

void rms_norm_f32(const float* x, const float* w, float* out, int64_t r0, int64_t r1, int64_t dim,
                  float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * dim;
    float* o = out + r * dim;
    float ss = 0.f;
    for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) o[i] = w[i] * (xr[i] * inv);
  }
}

void rope_neox_f32(float* x, const float* cos, const float* sin, int64_t t0, int64_t t1,
                   int64_t heads, int64_t head_dim, int64_t row_stride) {
  const int64_t half = head_dim / 2;
  for (int64_t t = t0; t < t1; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* a = x + t * row_stride + h * head_dim;
      float* b = a + half;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = a[i], x2 = b[i];
        a[i] = x1 * c[i] - x2 * s[i];
        b[i] = x2 * c[i] + x1 * s[i];
      }
    }
  }
}

namespace {
float bf(uint16_t h) { return bf16_to_fp32(h); }
// fp32 rounded to bf16 and back: the value a bf16 tensor holds after an op.
float rbf(float v) { return bf16_to_fp32(bf16_bits(v)); }
}  // namespace

void rms_norm_bf16(const uint16_t* x, const uint16_t* w, uint16_t* out, int64_t r0, int64_t r1,
                   int64_t dim, float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const uint16_t* xr = x + r * dim;
    uint16_t* o = out + r * dim;
    float ss = 0.f;
    for (int64_t i = 0; i < dim; ++i) ss += bf(xr[i]) * bf(xr[i]);
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) o[i] = bf16_bits(bf(w[i]) * rbf(bf(xr[i]) * inv));
  }
}

void rope_neox_bf16(uint16_t* x, const float* cos, const float* sin, int64_t t0, int64_t t1,
                    int64_t heads, int64_t head_dim, int64_t row_stride) {
  const int64_t half = head_dim / 2;
  for (int64_t t = t0; t < t1; ++t) {
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int64_t h = 0; h < heads; ++h) {
      uint16_t* a = x + t * row_stride + h * head_dim;
      uint16_t* b = a + half;
      for (int64_t i = 0; i < half; ++i) {
        const float x1 = bf(a[i]), x2 = bf(b[i]), ci = rbf(c[i]), si = rbf(s[i]);
        a[i] = bf16_bits(rbf(x1 * ci) - rbf(x2 * si));
        b[i] = bf16_bits(rbf(x2 * ci) + rbf(x1 * si));
      }
    }
  }
}

void rms_norm_backward_f32(const float* x, const float* w, const float* dy, float* dx, int64_t r0,
                           int64_t r1, int64_t dim, float eps) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * dim;
    const float* g = dy + r * dim;
    float* o = dx + r * dim;
    float ss = 0.f, dot = 0.f;
    for (int64_t i = 0; i < dim; ++i) {
      ss += xr[i] * xr[i];
      dot += w[i] * g[i] * xr[i];
    }
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    const float k = inv * inv * inv * dot / static_cast<float>(dim);
    for (int64_t i = 0; i < dim; ++i) o[i] = inv * w[i] * g[i] - k * xr[i];
  }
}

void silu_mul_backward_f32(const float* gu, const float* dy, float* dgu, int64_t r0, int64_t r1,
                           int64_t inter) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* gate = gu + r * 2 * inter;
    const float* up = gate + inter;
    const float* g = dy + r * inter;
    float* dgate = dgu + r * 2 * inter;
    float* dup = dgate + inter;
    for (int64_t i = 0; i < inter; ++i) {
      const float s = 1.0f / (1.0f + std::exp(-gate[i]));
      dup[i] = g[i] * gate[i] * s;
      dgate[i] = g[i] * up[i] * s * (1.0f + gate[i] * (1.0f - s));
    }
  }
}

}  // namespace sllm::kernels::cpu
