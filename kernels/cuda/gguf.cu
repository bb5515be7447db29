#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/gemv_common.cuh"
#include "kernels/cuda/gguf.h"

namespace sllm::kernels::cuda {
namespace {

constexpr int kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8, kQ4_K = 12, kQ5_K = 13,
              kQ6_K = 14;

__host__ __device__ constexpr bool k_quant(int t) { return t >= kQ4_K; }
__host__ __device__ constexpr bool has_min(int t) {
  return t == kQ4_1 || t == kQ5_1 || t == kQ4_K || t == kQ5_K;
}

// Bytes of a block (K-quants: of a 256-element super-block of 8 32-element sub-blocks).
__host__ __device__ constexpr int block_bytes(int t) {
  return t == kQ4_0   ? 18
         : t == kQ4_1 ? 20
         : t == kQ5_0 ? 22
         : t == kQ5_1 ? 24
         : t == kQ4_K ? 144
         : t == kQ5_K ? 176
         : t == kQ6_K ? 210
                      : 34;
}

__device__ inline float half_at(const uint8_t* p) {
  const uint16_t h = static_cast<uint16_t>(p[0] | (p[1] << 8));
  return __half2float(__ushort_as_half(h));
}

// 32-element sub-block j (0..7) of a K-quant super-block b: scale d (Q6_K: d of elements 0..15,
// d2 of 16..31), minimum m (Q4_K / Q5_K: -dmin * m_j) and values (layouts as ggml's dequantizers
// in kernels/cpu/gguf_dequant.cpp; the scale products rounded in fp32 as there).
template <int T>
__device__ inline void decode_k(const uint8_t* b, int j, float& d, float& d2, float& m,
                                float (&q)[32]) {
  if constexpr (T == kQ6_K) {
    const int h = j / 4, g = j & 3;
    const uint8_t* ql = b + 64 * h + 32 * (g & 1);
    const uint8_t* qh = b + 128 + 32 * h;
    const auto* sc = reinterpret_cast<const int8_t*>(b + 192 + 8 * h + 2 * g);
    const float dd = half_at(b + 208);
    d = __fmul_rn(dd, static_cast<float>(sc[0]));
    d2 = __fmul_rn(dd, static_cast<float>(sc[1]));
    m = 0.f;
#pragma unroll
    for (int l = 0; l < 32; ++l)
      q[l] = static_cast<float>(
          (((ql[l] >> (4 * (g >> 1))) & 0xF) | (((qh[l] >> (2 * g)) & 3) << 4)) - 32);
  } else {
    const uint8_t* s = b + 4;
    int sc, mn;
    if (j < 4) {
      sc = s[j] & 63;
      mn = s[j + 4] & 63;
    } else {
      sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
      mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
    d = __fmul_rn(half_at(b), static_cast<float>(sc));
    d2 = d;
    m = -__fmul_rn(half_at(b + 2), static_cast<float>(mn));
    const uint8_t* qs = b + (T == kQ4_K ? 16 : 48) + 32 * (j / 2);
    const int sh = 4 * (j & 1);
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      int v = (qs[l] >> sh) & 0xF;
      if constexpr (T == kQ5_K) v |= ((b[16 + l] >> j) & 1) << 4;
      q[l] = static_cast<float>(v);
    }
  }
}

// Block i of a run of blocks (K-quants: sub-block i of the super-blocks): its scale (d2: Q6_K's
// second half, else d), minimum (0 for the types without one) and its 32 values as integers, in
// element order: Q4 / Q5 element j < 16 is the low nibble of byte j, j >= 16 the high nibble of
// byte j - 16 (plus bit j of qh as the fifth bit); minus 8 / 16 for the types without a minimum.
template <int T>
__device__ inline void decode_block(const uint8_t* blocks, int64_t i, float& d, float& d2, float& m,
                                    float (&q)[32]) {
  if constexpr (k_quant(T)) {
    decode_k<T>(blocks + (i >> 3) * block_bytes(T), static_cast<int>(i & 7), d, d2, m, q);
    return;
  }
  const uint8_t* b = blocks + i * block_bytes(T);
  d = half_at(b);
  d2 = d;
  m = 0.f;
  const uint8_t* qs;
  uint32_t qh = 0;
  if constexpr (T == kQ4_0) {
    qs = b + 2;
  } else if constexpr (T == kQ4_1) {
    m = half_at(b + 2);
    qs = b + 4;
  } else if constexpr (T == kQ5_0) {
    qh = b[2] | (b[3] << 8) | (b[4] << 16) | (static_cast<uint32_t>(b[5]) << 24);
    qs = b + 6;
  } else if constexpr (T == kQ5_1) {
    m = half_at(b + 2);
    qh = b[4] | (b[5] << 8) | (b[6] << 16) | (static_cast<uint32_t>(b[7]) << 24);
    qs = b + 8;
  } else {
    qs = b + 2;
  }
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    int v;
    if constexpr (T == kQ8_0) {
      v = static_cast<int8_t>(qs[j]);
    } else {
      v = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
      if constexpr (T == kQ5_0 || T == kQ5_1) v |= static_cast<int>(((qh >> j) & 1u) << 4);
      if constexpr (T == kQ4_0) v -= 8;
      if constexpr (T == kQ5_0) v -= 16;
    }
    q[j] = static_cast<float>(v);
  }
}

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(
      std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, int64_t{1} << 20)));
}

// One thread per block of 32 elements.
template <int T, class D>
__global__ void __launch_bounds__(kThreads)
    gguf_dequant_kernel(const uint8_t* __restrict__ blocks, int64_t nblocks, D* __restrict__ dst) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < nblocks;
       i += int64_t{gridDim.x} * blockDim.x) {
    float d, d2, m, q[32];
    decode_block<T>(blocks, i, d, d2, m, q);
    D* out = dst + i * 32;
#pragma unroll
    // Rounded as the CPU dequantizer (no fused multiply-add): the same fp32 values.
    for (int j = 0; j < 32; ++j) {
      const float w = __fmul_rn(j < 16 ? d : d2, q[j]);
      out[j] = from_f<D>(has_min(T) ? __fadd_rn(w, m) : w);
    }
  }
}

// One warp per output row; lane l takes the row's blocks l, l + 32, ... for every row of x.
template <int T, class D, int R>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gguf_gemv_kernel(const uint8_t* __restrict__ blocks, const D* __restrict__ x,
                     const D* __restrict__ bias, D* __restrict__ y, int64_t out, int64_t in) {
  const int lane = threadIdx.x & 31;
  const int64_t o = int64_t{blockIdx.x} * kGemvWarps + (threadIdx.x >> 5);
  if (o >= out) return;
  const int64_t nb = in / 32;
  const uint8_t* row = blocks + o * (in / (k_quant(T) ? 256 : 32)) * block_bytes(T);
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.f;
  for (int64_t b = lane; b < nb; b += 32) {
    float d, d2, m, q[32];
    decode_block<T>(row, b, d, d2, m, q);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const D* xb = x + r * in + b * 32;
      float dot = 0.f, dot2 = 0.f, sum = 0.f;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        const float xv = to_f(xb[j]);
        if (T == kQ6_K && j >= 16)
          dot2 = fmaf(q[j], xv, dot2);
        else
          dot = fmaf(q[j], xv, dot);
        sum += xv;
      }
      if constexpr (T == kQ6_K) acc[r] = fmaf(d2, dot2, acc[r]);
      acc[r] = fmaf(d, dot, fmaf(m, sum, acc[r]));
    }
  }
  warp_reduce<R>(acc);
  write_rows<D, R>(acc, bias, y, out, o);
}

template <int T, class D>
int launch_dequant(const uint8_t* blocks, int64_t out, int64_t in, void* dst, cudaStream_t stream) {
  const int64_t n = out * (in / 32);
  gguf_dequant_kernel<T, D><<<grid_for(n), kThreads, 0, stream>>>(blocks, n, static_cast<D*>(dst));
  return static_cast<int>(cudaGetLastError());
}

template <int T, class D, int R>
int launch_gemv_rows(const uint8_t* blocks, const void* x, const void* bias, void* y, int64_t out,
                     int64_t in, cudaStream_t stream) {
  const unsigned grid = static_cast<unsigned>((out + kGemvWarps - 1) / kGemvWarps);
  gguf_gemv_kernel<T, D, R><<<grid, kGemvWarps * 32, 0, stream>>>(
      blocks, static_cast<const D*>(x), static_cast<const D*>(bias), static_cast<D*>(y), out, in);
  return static_cast<int>(cudaGetLastError());
}

template <int T, class D>
int launch_gemv(const uint8_t* blocks, const void* x, const void* bias, void* y, int64_t rows,
                int64_t out, int64_t in, cudaStream_t stream) {
  switch (rows) {
    case 1:
      return launch_gemv_rows<T, D, 1>(blocks, x, bias, y, out, in, stream);
    case 2:
      return launch_gemv_rows<T, D, 2>(blocks, x, bias, y, out, in, stream);
    case 3:
      return launch_gemv_rows<T, D, 3>(blocks, x, bias, y, out, in, stream);
    case 4:
      return launch_gemv_rows<T, D, 4>(blocks, x, bias, y, out, in, stream);
    default:
      return launch_gemv_rows<T, D, kGgufGemvMaxRows>(blocks, x, bias, y, out, in, stream);
  }
}

struct DequantOp {
  template <int T, class D>
  static int run(const uint8_t* blocks, int64_t out, int64_t in, void* dst, cudaStream_t s) {
    return launch_dequant<T, D>(blocks, out, in, dst, s);
  }
};
struct GemvOp {
  template <int T, class D>
  static int run(const uint8_t* blocks, const void* x, const void* bias, void* y, int64_t rows,
                 int64_t out, int64_t in, cudaStream_t s) {
    return launch_gemv<T, D>(blocks, x, bias, y, rows, out, in, s);
  }
};

// Op::run<T, D>(args...) for the runtime type and dtype.
template <class Op, int T, class... A>
int by_dtype(DType dtype, A... a) {
  switch (dtype) {
    case DType::f16:
      return Op::template run<T, __half>(a...);
    case DType::bf16:
      return Op::template run<T, __nv_bfloat16>(a...);
    default:
      return Op::template run<T, float>(a...);
  }
}
template <class Op, class... A>
int dispatch(int type, DType dtype, A... a) {
  switch (type) {
    case kQ4_0:
      return by_dtype<Op, kQ4_0>(dtype, a...);
    case kQ4_1:
      return by_dtype<Op, kQ4_1>(dtype, a...);
    case kQ5_0:
      return by_dtype<Op, kQ5_0>(dtype, a...);
    case kQ5_1:
      return by_dtype<Op, kQ5_1>(dtype, a...);
    case kQ8_0:
      return by_dtype<Op, kQ8_0>(dtype, a...);
    case kQ4_K:
      return by_dtype<Op, kQ4_K>(dtype, a...);
    case kQ5_K:
      return by_dtype<Op, kQ5_K>(dtype, a...);
    case kQ6_K:
      return by_dtype<Op, kQ6_K>(dtype, a...);
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
}

}  // namespace

int gguf_dequantize(const uint8_t* blocks, int type, int64_t out, int64_t in, void* dst,
                    DType dtype, void* stream) {
  return dispatch<DequantOp>(type, dtype, blocks, out, in, dst, static_cast<cudaStream_t>(stream));
}

int gguf_gemv(const uint8_t* blocks, int type, const void* x, const void* bias, void* y,
              int64_t rows, int64_t out, int64_t in, DType dtype, void* stream) {
  if (rows < 1 || rows > kGgufGemvMaxRows) return static_cast<int>(cudaErrorInvalidValue);
  return dispatch<GemvOp>(type, dtype, blocks, x, bias, y, rows, out, in,
                          static_cast<cudaStream_t>(stream));
}

}  // namespace sllm::kernels::cuda
