// fp32 <-> storage-type conversions shared by the CUDA kernels (device code only).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace sllm::kernels::cuda {

__device__ inline float to_f(float v) { return v; }
__device__ inline float to_f(__half v) { return __half2float(v); }
__device__ inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <class T>
__device__ inline T from_f(float v);
template <>
__device__ inline float from_f<float>(float v) {
  return v;
}
template <>
__device__ inline __half from_f<__half>(float v) {
  return __float2half(v);
}
template <>
__device__ inline __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);
}

}  // namespace sllm::kernels::cuda
