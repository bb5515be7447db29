// Fused element-wise kernels for the decoder's small ops (fp32, row ranges).
// Small models at batch 1 are bound by per-op overhead: one pass instead of 4-6 ATen ops.
#pragma once

#include <cstdint>

namespace sllm::kernels::cpu {

// out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w, for rows [r0, r1).
void rms_norm_f32(const float* x, const float* w, float* out, int64_t r0, int64_t r1, int64_t dim,
                  float eps);

// Rotary embedding, rotate-half (NeoX / Hugging Face) layout, in place on x[t, h, :] for
// tokens [t0, t1). cos/sin hold [token, head_dim/2] rows already gathered for each token.
void rope_neox_f32(float* x, const float* cos, const float* sin, int64_t t0, int64_t t1,
                   int64_t heads, int64_t head_dim, int64_t row_stride);

// bf16 versions (raw bf16 bits): statistics and products in fp32, rounded to bf16 at the same
// points as the reference ops (ops::ref, i.e. transformers' bf16 arithmetic): rms_norm rounds
// x * r, then w * that; rope rounds cos/sin, each product, then the sum.
void rms_norm_bf16(const uint16_t* x, const uint16_t* w, uint16_t* out, int64_t r0, int64_t r1,
                   int64_t dim, float eps);
void rope_neox_bf16(uint16_t* x, const float* cos, const float* sin, int64_t t0, int64_t t1,
                    int64_t heads, int64_t head_dim, int64_t row_stride);

// Backward of rms_norm_f32 with respect to x (rows [r0, r1)); the scale is recomputed from x:
// dx = r * (w * dy) - x * r^3 * mean((w * dy) * x), r = rsqrt(mean(x^2) + eps).
void rms_norm_backward_f32(const float* x, const float* w, const float* dy, float* dx, int64_t r0,
                           int64_t r1, int64_t dim, float eps);

// Backward of silu(gate) * up for rows [r0, r1) of gu = [gate | up] (2 * inter wide):
// dgate = dy * up * s * (1 + gate * (1 - s)), dup = dy * gate * s, s = sigmoid(gate).
void silu_mul_backward_f32(const float* gu, const float* dy, float* dgu, int64_t r0, int64_t r1,
                           int64_t inter);

}  // namespace sllm::kernels::cpu
