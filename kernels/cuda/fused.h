// CUDA fused kernels: raw device pointers + sizes + stream (no libtorch here).
#pragma once

#include <cstdint>

namespace sllm::kernels::cuda {

enum class DType { f32 = 0, f16 = 1, bf16 = 2 };

// out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w; statistics in fp32. Returns a
// cudaError_t value (0 on success) so callers can raise their own errors.
int rms_norm(const void* x, const void* w, void* out, int64_t rows, int64_t dim, float eps,
             DType dtype, void* stream);

// out[r, i] = silu(gu[r, i]) * gu[r, inter + i].
int silu_mul(const void* gu, void* out, int64_t rows, int64_t inter, DType dtype, void* stream);

}  // namespace sllm::kernels::cuda
