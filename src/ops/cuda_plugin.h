// The CUDA side of the ops lives in a plugin (libsllm_cuda_ops.so) that is loaded only when a
// CUDA device is asked for. Loading it pulls in libtorch_cuda and the CUDA libraries; a CPU run
// never maps them, which keeps about 400 MB of CUDA libraries and their static state out of
// every CPU process (see docs/ARCHITECTURE.md).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "ops/gguf.h"
#include "ops/intq.h"
#include "ops/nf4.h"

namespace sllm::ops {

struct CudaOps {
  int abi_version;
  at::Tensor (*rms_norm)(const at::Tensor& x, const at::Tensor& w, double eps);
  at::Tensor (*silu_mul)(const at::Tensor& gu);
  at::Tensor (*nf4_dequantize)(const Nf4Tensors& w, at::ScalarType dtype);
  // x with 1..nf4_gemv_max_rows rows; bias may be undefined.
  at::Tensor (*nf4_gemv)(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias);
  int64_t nf4_gemv_max_rows;
  // [out, in] in dtype (fp32 / fp16 / bf16), perm undone.
  at::Tensor (*intq_dequantize)(const IntQTensors& w, at::ScalarType dtype);
  // x [rows, in] contiguous, rows 1..intq_gemv_max_rows, ALREADY in storage column order (x[:,
  // perm] for act-order weights); bias may be undefined. Returns [rows, out] in x's dtype.
  at::Tensor (*intq_gemv)(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias);
  int64_t intq_gemv_max_rows;
  at::Tensor (*int8_dequantize)(const Int8Tensors& w, at::ScalarType dtype);
  // GGUF blocks as stored: [out, in] in dtype (ggml's values); x [rows, in] contiguous, rows
  // 1..gguf_gemv_max_rows, fp32 activations in x's dtype; bias may be undefined.
  at::Tensor (*gguf_dequantize)(const GgufTensors& w, at::ScalarType dtype);
  at::Tensor (*gguf_gemv)(const at::Tensor& x, const GgufTensors& w, const at::Tensor& bias);
  int64_t gguf_gemv_max_rows;
  // Peak bytes allocated to tensors and reserved by libtorch's caching allocator on a device
  // since the process started.
  void (*peak_memory)(int device, uint64_t* allocated, uint64_t* reserved);
};
constexpr int kCudaOpsAbi = 4;

// Loads the plugin once (thread-safe) and returns its table, or nullptr when sllm was built
// without CUDA or the plugin cannot be loaded (the reason is logged at debug level).
const CudaOps* cuda_ops();
// The plugin is loaded and libtorch reports a usable GPU.
bool cuda_available();

struct CudaPeakMemory {
  uint64_t allocated = 0;  // peak bytes held by tensors
  uint64_t reserved = 0;   // peak bytes the caching allocator held from the driver
};
// Peak figures of `device` (a CUDA device index); zeros when the plugin is not loaded.
CudaPeakMemory cuda_peak_memory(int device);

}  // namespace sllm::ops

extern "C" const sllm::ops::CudaOps* sllm_cuda_ops_v1();
