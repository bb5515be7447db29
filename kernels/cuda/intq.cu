#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/gemv_common.cuh"
#include "kernels/cuda/intq.h"

namespace sllm::kernels::cuda {
namespace {

// log2(n) for powers of two, else -1 (divide).
int shift_of(int64_t n) {
  if (n <= 0 || (n & (n - 1)) != 0) return -1;
  int s = 0;
  while ((int64_t{1} << s) < n) ++s;
  return s;
}

__device__ inline int64_t group_of(int64_t j, int64_t group_size, int shift) {
  return shift >= 0 ? (j >> shift) : j / group_size;
}

__device__ inline int qval(const uint8_t* row, int64_t j, int storage_bits) {
  if (storage_bits == 8) return row[j];
  const uint8_t b = row[j >> 1];
  return (j & 1) ? (b >> 4) : (b & 0x0F);
}

// The 8 weights (as integers) of one step of the vectorised GEMV: 4 bytes (storage 4, element
// 2k in the low nibble of byte k) or 8 bytes (storage 8).
template <int B>
__device__ inline void load_q8(const uint8_t* p, float (&q)[8]) {
  if constexpr (B == 4) {
    const uint32_t w = __ldg(reinterpret_cast<const uint32_t*>(p));
#pragma unroll
    for (int k = 0; k < 8; ++k) q[k] = static_cast<float>((w >> (4 * k)) & 0x0Fu);
  } else {
    const uint2 w = __ldg(reinterpret_cast<const uint2*>(p));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      q[k] = static_cast<float>((w.x >> (8 * k)) & 0xFFu);
      q[4 + k] = static_cast<float>((w.y >> (8 * k)) & 0xFFu);
    }
  }
}

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 20)));
}

// One thread per storage byte (storage 4: elements 2b and 2b + 1 of a row).
template <class T>
__global__ void __launch_bounds__(kThreads)
    intq_dequant_kernel(const uint8_t* __restrict__ q, const float* __restrict__ scales,
                        const float* __restrict__ zeros, const int64_t* __restrict__ perm,
                        int storage_bits, int64_t group_size, int shift, int64_t out, int64_t in,
                        T* __restrict__ dst) {
  const int64_t per_row = storage_bits == 4 ? in / 2 : in;
  const int64_t groups = (in + group_size - 1) / group_size;
  const int64_t nbytes = out * per_row;
  for (int64_t b = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; b < nbytes;
       b += int64_t{gridDim.x} * blockDim.x) {
    const int64_t o = b / per_row, c = b - o * per_row;
    const uint8_t v = q[b];
    T* drow = dst + o * in;
    const float* s = scales + o * groups;
    const float* z = zeros + o * groups;
    if (storage_bits == 8) {
      const int64_t g = group_of(c, group_size, shift);
      const float w = (static_cast<float>(v) - z[g]) * s[g];
      drow[perm ? perm[c] : c] = from_f<T>(w);
      continue;
    }
    const int64_t j = 2 * c;
    const int64_t g0 = group_of(j, group_size, shift), g1 = group_of(j + 1, group_size, shift);
    const float w0 = (static_cast<float>(v & 0x0F) - z[g0]) * s[g0];
    const float w1 = (static_cast<float>(v >> 4) - z[g1]) * s[g1];
    if (perm) {
      drow[perm[j]] = from_f<T>(w0);
      drow[perm[j + 1]] = from_f<T>(w1);
    } else {
      store2(drow + j, w0, w1);
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    int8_dequant_kernel(const int8_t* __restrict__ q, const float* __restrict__ scb, int64_t n,
                        int64_t in, T* __restrict__ dst) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = from_f<T>(static_cast<float>(q[i]) * __ldg(scb + i / in) / 127.f);
}

// in % 8 == 0, group_size % 8 == 0: each lane takes 8 weights (one group) per step.
template <class T, int R, int B>
__global__ void __launch_bounds__(kGemvWarps * 32)
    intq_gemv_vec_kernel(const uint8_t* __restrict__ q, const float* __restrict__ scales,
                         const float* __restrict__ zeros, int64_t group_size, int shift,
                         const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y,
                         int64_t out, int64_t in) {
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t{blockIdx.x} * kGemvWarps + (threadIdx.x >> 5);
  if (o >= out) return;
  const int64_t groups = (in + group_size - 1) / group_size;
  const uint8_t* row = q + o * (B == 4 ? in / 2 : in);
  const float* s = scales + o * groups;
  const float* z = zeros + o * groups;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  const int64_t steps = in >> 3;
#pragma unroll 2
  for (int64_t k = lane; k < steps; k += 32) {
    const int64_t j = k << 3;
    const int64_t g = group_of(j, group_size, shift);
    const float sg = __ldg(s + g), zg = __ldg(z + g);
    float w[8];
    load_q8<B>(row + (B == 4 ? j / 2 : j), w);
#pragma unroll
    for (int i = 0; i < 8; ++i) w[i] = (w[i] - zg) * sg;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float xv[8];
      load8(x + r * in + j, xv);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[r] = fmaf(w[i], xv[i], acc[r]);
    }
  }
  warp_reduce(acc);
  write_rows(acc, bias, y, out, o);
}

// Any shape / alignment: lanes stride over the row one weight at a time.
template <class T, int R>
__global__ void __launch_bounds__(kGemvWarps * 32)
    intq_gemv_generic_kernel(const uint8_t* __restrict__ q, const float* __restrict__ scales,
                             const float* __restrict__ zeros, int storage_bits, int64_t group_size,
                             int shift, const T* __restrict__ x, const T* __restrict__ bias,
                             T* __restrict__ y, int64_t out, int64_t in) {
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t{blockIdx.x} * kGemvWarps + (threadIdx.x >> 5);
  if (o >= out) return;
  const int64_t groups = (in + group_size - 1) / group_size;
  const uint8_t* row = q + o * (storage_bits == 4 ? in / 2 : in);
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  for (int64_t j = lane; j < in; j += 32) {
    const int64_t g = o * groups + group_of(j, group_size, shift);
    const float w =
        (static_cast<float>(qval(row, j, storage_bits)) - __ldg(zeros + g)) * __ldg(scales + g);
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = fmaf(w, to_f(x[r * in + j]), acc[r]);
  }
  warp_reduce(acc);
  write_rows(acc, bias, y, out, o);
}

struct GemvArgs {
  const uint8_t* q;
  const float* scales;
  const float* zeros;
  int storage_bits;
  int64_t group_size, out, in;
};

template <class T, int R>
int launch_gemv_rows(const GemvArgs& a, const T* x, const T* bias, T* y, cudaStream_t s) {
  const unsigned blocks = static_cast<unsigned>((a.out + kGemvWarps - 1) / kGemvWarps);
  const int shift = shift_of(a.group_size);
  const uintptr_t qalign = a.storage_bits == 4 ? 4 : 8;
  const bool vec = a.in % 8 == 0 && a.group_size % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(a.q) % qalign == 0 &&
                   reinterpret_cast<uintptr_t>(x) % 16 == 0;
  if (vec && a.storage_bits == 4)
    intq_gemv_vec_kernel<T, R, 4><<<blocks, kGemvWarps * 32, 0, s>>>(
        a.q, a.scales, a.zeros, a.group_size, shift, x, bias, y, a.out, a.in);
  else if (vec)
    intq_gemv_vec_kernel<T, R, 8><<<blocks, kGemvWarps * 32, 0, s>>>(
        a.q, a.scales, a.zeros, a.group_size, shift, x, bias, y, a.out, a.in);
  else
    intq_gemv_generic_kernel<T, R><<<blocks, kGemvWarps * 32, 0, s>>>(
        a.q, a.scales, a.zeros, a.storage_bits, a.group_size, shift, x, bias, y, a.out, a.in);
  return static_cast<int>(cudaGetLastError());
}

template <class T>
int launch_gemv(const GemvArgs& a, const void* xv, const void* biasv, void* yv, int64_t rows,
                cudaStream_t s) {
  if (rows == 0 || a.out == 0) return 0;
  const T* x = static_cast<const T*>(xv);
  const T* bias = static_cast<const T*>(biasv);
  T* y = static_cast<T*>(yv);
  switch (rows) {
    case 1:
      return launch_gemv_rows<T, 1>(a, x, bias, y, s);
    case 2:
      return launch_gemv_rows<T, 2>(a, x, bias, y, s);
    case 3:
      return launch_gemv_rows<T, 3>(a, x, bias, y, s);
    case 4:
      return launch_gemv_rows<T, 4>(a, x, bias, y, s);
    case 5:
      return launch_gemv_rows<T, 5>(a, x, bias, y, s);
    case 6:
      return launch_gemv_rows<T, 6>(a, x, bias, y, s);
    case 7:
      return launch_gemv_rows<T, 7>(a, x, bias, y, s);
    case 8:
      return launch_gemv_rows<T, 8>(a, x, bias, y, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

template <class T>
int launch_dequant(const uint8_t* q, const float* scales, const float* zeros, const int64_t* perm,
                   int storage_bits, int64_t group_size, int64_t out, int64_t in, void* dst,
                   cudaStream_t s) {
  const int64_t nbytes = out * (storage_bits == 4 ? in / 2 : in);
  if (nbytes == 0) return 0;
  intq_dequant_kernel<T><<<grid_for(nbytes), kThreads, 0, s>>>(q, scales, zeros, perm, storage_bits,
                                                               group_size, shift_of(group_size),
                                                               out, in, static_cast<T*>(dst));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int intq_dequantize(const uint8_t* q, const float* scales, const float* zeros, const int64_t* perm,
                    int storage_bits, int64_t group_size, int64_t out, int64_t in, void* dst,
                    DType dtype, void* stream) {
  if (group_size <= 0 || (storage_bits != 4 && storage_bits != 8) ||
      (storage_bits == 4 && in % 2 != 0))
    return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_dequant<float>(q, scales, zeros, perm, storage_bits, group_size, out, in, dst,
                                   s);
    case DType::f16:
      return launch_dequant<__half>(q, scales, zeros, perm, storage_bits, group_size, out, in, dst,
                                    s);
    case DType::bf16:
      return launch_dequant<__nv_bfloat16>(q, scales, zeros, perm, storage_bits, group_size, out,
                                           in, dst, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int intq_gemv(const uint8_t* q, const float* scales, const float* zeros, int storage_bits,
              int64_t group_size, const void* x, const void* bias, void* y, int64_t rows,
              int64_t out, int64_t in, DType dtype, void* stream) {
  if (group_size <= 0 || rows < 0 || rows > kIntqGemvMaxRows ||
      (storage_bits != 4 && storage_bits != 8) || (storage_bits == 4 && in % 2 != 0))
    return static_cast<int>(cudaErrorInvalidValue);
  const GemvArgs a{q, scales, zeros, storage_bits, group_size, out, in};
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      return launch_gemv<float>(a, x, bias, y, rows, s);
    case DType::f16:
      return launch_gemv<__half>(a, x, bias, y, rows, s);
    case DType::bf16:
      return launch_gemv<__nv_bfloat16>(a, x, bias, y, rows, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int int8_dequantize(const int8_t* q, const float* scb, int64_t out, int64_t in, void* dst,
                    DType dtype, void* stream) {
  const int64_t n = out * in;
  if (n == 0) return 0;
  auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case DType::f32:
      int8_dequant_kernel<float>
          <<<grid_for(n), kThreads, 0, s>>>(q, scb, n, in, static_cast<float*>(dst));
      break;
    case DType::f16:
      int8_dequant_kernel<__half>
          <<<grid_for(n), kThreads, 0, s>>>(q, scb, n, in, static_cast<__half*>(dst));
      break;
    case DType::bf16:
      int8_dequant_kernel<__nv_bfloat16>
          <<<grid_for(n), kThreads, 0, s>>>(q, scb, n, in, static_cast<__nv_bfloat16*>(dst));
      break;
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace sllm::kernels::cuda
