#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/gemv_common.cuh"
#include "kernels/cuda/nf4.h"

namespace sllm::kernels::cuda {
namespace {

// log2(blocksize) for powers of two, else -1 (divide).
int block_shift(int64_t blocksize) {
  if (blocksize <= 0 || (blocksize & (blocksize - 1)) != 0) return -1;
  int s = 0;
  while ((int64_t{1} << s) < blocksize) ++s;
  return s;
}

__device__ inline int64_t block_of(int64_t e, int64_t blocksize, int shift) {
  return shift >= 0 ? (e >> shift) : e / blocksize;
}

constexpr int kDequantThreads = 256;

template <class T>
__global__ void __launch_bounds__(kDequantThreads)
    nf4_dequant_kernel(const uint8_t* __restrict__ packed, const float* __restrict__ absmax,
                       const float* __restrict__ code, int64_t n, int64_t blocksize, int shift,
                       T* __restrict__ out) {
  __shared__ float s_code[16];
  if (threadIdx.x < 16) s_code[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  const int64_t nbytes = (n + 1) / 2;
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < nbytes;
       b += int64_t{gridDim.x} * blockDim.x) {
    const uint8_t v = packed[b];
    const int64_t e = 2 * b;
    const float hi = s_code[v >> 4] * __ldg(absmax + block_of(e, blocksize, shift));
    if (e + 1 < n)
      store2(out + e, hi, s_code[v & 0x0F] * __ldg(absmax + block_of(e + 1, blocksize, shift)));
    else
      out[e] = from_f<T>(hi);
  }
}

// in % 8 == 0, blocksize a power of two >= 8: each lane takes 4 packed bytes (8 weights, all in
// one block) per step; the code products are summed against x and scaled by the absmax once.
template <class T, int R>
__global__ void __launch_bounds__(kGemvWarps * 32)
    nf4_gemv_vec_kernel(const uint32_t* __restrict__ packed, const float* __restrict__ absmax,
                        const float* __restrict__ code, int shift, const T* __restrict__ x,
                        const T* __restrict__ bias, T* __restrict__ y, int64_t out, int64_t in) {
  __shared__ float s_code[16];
  if (threadIdx.x < 16) s_code[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t{blockIdx.x} * kGemvWarps + (threadIdx.x >> 5);
  if (o >= out) return;
  const int64_t groups = in >> 3;  // 8 weights per group
  const uint32_t* wrow = packed + o * groups;
  const int64_t first = o * in;  // flat index of the row's first weight
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
#pragma unroll 2
  for (int64_t g = lane; g < groups; g += 32) {
    const uint32_t word = __ldg(wrow + g);
    const float a = __ldg(absmax + ((first + (g << 3)) >> shift));
    float w[8];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t byte = (word >> (8 * k)) & 0xFFu;
      w[2 * k] = s_code[byte >> 4];
      w[2 * k + 1] = s_code[byte & 0x0Fu];
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float xv[8];
      load8(x + r * in + (g << 3), xv);
      float p = 0.f;
#pragma unroll
      for (int k = 0; k < 8; ++k) p = fmaf(w[k], xv[k], p);
      acc[r] = fmaf(p, a, acc[r]);
    }
  }
  warp_reduce(acc);
  write_rows(acc, bias, y, out, o);
}

// Any in / blocksize / alignment: lanes stride over the row one weight at a time.
template <class T, int R>
__global__ void __launch_bounds__(kGemvWarps * 32)
    nf4_gemv_generic_kernel(const uint8_t* __restrict__ packed, const float* __restrict__ absmax,
                            const float* __restrict__ code, int64_t blocksize, int shift,
                            const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y,
                            int64_t out, int64_t in) {
  __shared__ float s_code[16];
  if (threadIdx.x < 16) s_code[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t{blockIdx.x} * kGemvWarps + (threadIdx.x >> 5);
  if (o >= out) return;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  for (int64_t i = lane; i < in; i += 32) {
    const int64_t e = o * in + i;
    const uint8_t b = packed[e >> 1];
    const float w =
        s_code[(e & 1) ? (b & 0x0F) : (b >> 4)] * __ldg(absmax + block_of(e, blocksize, shift));
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = fmaf(w, to_f(x[r * in + i]), acc[r]);
  }
  warp_reduce(acc);
  write_rows(acc, bias, y, out, o);
}

template <class T>
int launch_dequant(const uint8_t* packed, const float* absmax, const float* code, int64_t n,
                   int64_t blocksize, void* out, cudaStream_t s) {
  if (n == 0) return 0;
  const int64_t nbytes = (n + 1) / 2;
  const int blocks = static_cast<int>(
      std::min<int64_t>((nbytes + kDequantThreads - 1) / kDequantThreads, int64_t{1} << 20));
  nf4_dequant_kernel<T><<<blocks, kDequantThreads, 0, s>>>(
      packed, absmax, code, n, blocksize, block_shift(blocksize), static_cast<T*>(out));
  return static_cast<int>(cudaGetLastError());
}

template <class T, int R>
int launch_gemv_rows(const uint8_t* packed, const float* absmax, const float* code,
                     int64_t blocksize, const T* x, const T* bias, T* y, int64_t out, int64_t in,
                     cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>((out + kGemvWarps - 1) / kGemvWarps);
  const int shift = block_shift(blocksize);
  const bool vec = in % 8 == 0 && shift >= 3 && reinterpret_cast<uintptr_t>(packed) % 4 == 0 &&
                   reinterpret_cast<uintptr_t>(x) % 16 == 0;
  if (vec)
    nf4_gemv_vec_kernel<T, R><<<blocks, kGemvWarps * 32, 0, s>>>(
        reinterpret_cast<const uint32_t*>(packed), absmax, code, shift, x, bias, y, out, in);
  else
    nf4_gemv_generic_kernel<T, R><<<blocks, kGemvWarps * 32, 0, s>>>(
        packed, absmax, code, blocksize, shift, x, bias, y, out, in);
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int launch_gemv(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
                const void* xv, const void* biasv, void* yv, int64_t rows, int64_t out, int64_t in,
                cudaStream_t s) {
  if (rows == 0 || out == 0) return 0;
  const T* x = static_cast<const T*>(xv);
  const T* bias = static_cast<const T*>(biasv);
  T* y = static_cast<T*>(yv);
  switch (rows) {
    case 1:
      return launch_gemv_rows<T, 1>(packed, absmax, code, blocksize, x, bias, y, out, in, s);
    case 2:
      return launch_gemv_rows<T, 2>(packed, absmax, code, blocksize, x, bias, y, out, in, s);
    case 3:
      return launch_gemv_rows<T, 3>(packed, absmax, code, blocksize, x, bias, y, out, in, s);
    case 4:
      return launch_gemv_rows<T, 4>(packed, absmax, code, blocksize, x, bias, y, out, in, s);
    case 5:
      return launch_gemv_rows<T, 5>(packed, absmax, code, blocksize, x, bias, y, out, in, s);
    case 6:
      return launch_gemv_rows<T, 6>(packed, absmax, code, blocksize, x, bias, y, out, in, s);
    case 7:
      return launch_gemv_rows<T, 7>(packed, absmax, code, blocksize, x, bias, y, out, in, s);
    case 8:
      return launch_gemv_rows<T, 8>(packed, absmax, code, blocksize, x, bias, y, out, in, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace

int nf4_dequantize(const uint8_t* packed, const float* absmax, const float* code, int64_t n,
                   int64_t blocksize, void* out, DType dtype, void* stream) {
  if (blocksize <= 0) return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_dequant<float>(packed, absmax, code, n, blocksize, out, s);
    case DType::f16:
      return launch_dequant<__half>(packed, absmax, code, n, blocksize, out, s);
    case DType::bf16:
      return launch_dequant<__nv_bfloat16>(packed, absmax, code, n, blocksize, out, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int nf4_gemv(const uint8_t* packed, const float* absmax, const float* code, int64_t blocksize,
             const void* x, const void* bias, void* y, int64_t rows, int64_t out, int64_t in,
             DType dtype, void* stream) {
  if (blocksize <= 0 || rows < 0 || rows > kNf4GemvMaxRows)
    return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_gemv<float>(packed, absmax, code, blocksize, x, bias, y, rows, out, in, s);
    case DType::f16:
      return launch_gemv<__half>(packed, absmax, code, blocksize, x, bias, y, rows, out, in, s);
    case DType::bf16:
      return launch_gemv<__nv_bfloat16>(packed, absmax, code, blocksize, x, bias, y, rows, out, in,
                                        s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace sllm::kernels::cuda
