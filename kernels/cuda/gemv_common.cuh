// Pieces of the one-warp-per-output-row GEMV kernels (NF4, int4/int8) that are the same for
// every weight format: the warp reduction and the write of a row's results (device code only).
#pragma once

#include <cstdint>

#include "kernels/cuda/convert.cuh"

namespace sllm::kernels::cuda {

constexpr int kGemvWarps = 4;  // output rows per block, one warp each

template <int R>
__device__ inline void warp_reduce(float (&acc)[R]) {
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffff, acc[r], off);
}

template <class T, int R>
__device__ inline void write_rows(const float (&acc)[R], const T* bias, T* y, int64_t out,
                                  int64_t o) {
  if ((threadIdx.x & 31) != 0) return;
  const float b = bias ? to_f(bias[o]) : 0.f;
#pragma unroll
  for (int r = 0; r < R; ++r) y[r * out + o] = from_f<T>(acc[r] + b);
}

}  // namespace sllm::kernels::cuda
