#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/fused.h"

namespace sllm::kernels::cuda {
namespace {


constexpr int kThreads = 256;

template <class T>
__global__ void rms_norm_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                T* __restrict__ out, int64_t dim, float eps) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * dim;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = to_f(xr[i]);
    ss += v * v;
  }
  // warp reduce, then across warps through shared memory
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffff, ss, off);
  __shared__ float partial[kThreads / 32];
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < kThreads / 32 ? partial[threadIdx.x] : 0.f;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffff, v, off);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / static_cast<float>(dim) + eps);
  // transformers rounds the normalised value to the input dtype before the weight multiply
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    out[row * dim + i] = from_f<T>(to_f(w[i]) * to_f(from_f<T>(to_f(xr[i]) * inv)));
}

template <class T>
__global__ void silu_mul_kernel(const T* __restrict__ gu, T* __restrict__ out, int64_t rows,
                                int64_t inter) {
  const int64_t n = rows * inter;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < n;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = idx / inter, i = idx % inter;
    const float g = to_f(gu[r * 2 * inter + i]);
    const float u = to_f(gu[r * 2 * inter + inter + i]);
    // silu rounded to T first, as transformers computes act(gate) * up in T
    out[idx] = from_f<T>(to_f(from_f<T>(g / (1.f + __expf(-g)))) * u);
  }
}

template <class T>
int launch_rms(const void* x, const void* w, void* out, int64_t rows, int64_t dim, float eps,
               cudaStream_t s) {
  if (rows == 0) return 0;
  rms_norm_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, s>>>(
      static_cast<const T*>(x), static_cast<const T*>(w), static_cast<T*>(out), dim, eps);
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int launch_silu(const void* gu, void* out, int64_t rows, int64_t inter, cudaStream_t s) {
  const int64_t n = rows * inter;
  if (n == 0) return 0;
  const int blocks = static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
  silu_mul_kernel<T>
      <<<blocks, kThreads, 0, s>>>(static_cast<const T*>(gu), static_cast<T*>(out), rows, inter);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int rms_norm(const void* x, const void* w, void* out, int64_t rows, int64_t dim, float eps,
             DType dtype, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_rms<float>(x, w, out, rows, dim, eps, s);
    case DType::f16:
      return launch_rms<__half>(x, w, out, rows, dim, eps, s);
    case DType::bf16:
      return launch_rms<__nv_bfloat16>(x, w, out, rows, dim, eps, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int silu_mul(const void* gu, void* out, int64_t rows, int64_t inter, DType dtype, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_silu<float>(gu, out, rows, inter, s);
    case DType::f16:
      return launch_silu<__half>(gu, out, rows, inter, s);
    case DType::bf16:
      return launch_silu<__nv_bfloat16>(gu, out, rows, inter, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace sllm::kernels::cuda
