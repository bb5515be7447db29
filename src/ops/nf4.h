// NF4 / FP4 weights as libtorch tensors, and the matmul over them. A 4-bit weight is dequantized
// on the fly: a fused GEMV for one-token decode (CPU and CUDA), dequantize + GEMM otherwise.
// Autograd flows to x (and bias) only; the packed weight is frozen and never saved for backward
// as a dense tensor, which is what keeps QLoRA's memory low.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace sllm::ops {

struct Nf4Tensors {
  at::Tensor packed;  // uint8 [out*in/2]; element 2i in the HIGH nibble of byte i (bitsandbytes)
  at::Tensor absmax;  // fp32 [out*in/blocksize], double quantization already undone
  at::Tensor code;    // fp32 [16], the NF4 or FP4 code values
  int64_t out = 0, in = 0, blocksize = 64;

  Nf4Tensors to(at::Device device) const;
  int64_t nbytes() const;  // packed + absmax + code
};

// CPU tensors copied from raw arrays: packed (out*in + 1) / 2 bytes, absmax
// ceil(out*in / blocksize) fp32 (double quantization undone: quant::dequantized_absmax), code 16
// fp32 (kernels::cpu::quant4_code or the stored quant_map).
Nf4Tensors make_nf4_tensors(const uint8_t* packed, const float* absmax, const float* code,
                            int64_t out, int64_t in, int64_t blocksize);

// [out, in] in dtype.
at::Tensor nf4_dequantize(const Nf4Tensors& w, at::ScalarType dtype);
// x [..., in] -> [..., out] in x's dtype; bias [out] or undefined. Differentiable w.r.t. x.
at::Tensor nf4_linear(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias);

namespace ref {
// Plain-libtorch versions (code lookup by nibble, absmax repeated per block) for parity tests.
at::Tensor nf4_dequantize(const Nf4Tensors& w, at::ScalarType dtype);
at::Tensor nf4_linear(const at::Tensor& x, const Nf4Tensors& w, const at::Tensor& bias);
}  // namespace ref

}  // namespace sllm::ops
