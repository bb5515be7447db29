// Integer-quantized weights as libtorch tensors, and the matmuls over them (inference only: no
// autograd through the weight). Two formats:
//  - IntQ: group-wise int4 / int8 with a scale and zero point per (row, group) -- what GPTQ, AWQ
//    and RTN produce. A fused dequant-GEMV for decode, dequantize + GEMM for prefill.
//  - Int8 (LLM.int8()): row-wise absmax int8 weights; activations are quantized row-wise to int8
//    and multiplied with int32 accumulation, except the outlier input columns (any |x| >=
//    threshold), which are multiplied in floating point with the dequantized weight columns.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace sllm::ops {

struct IntQTensors {
  // bits <= 4: uint8 [out, in / 2], element (o, 2j) in the LOW nibble of byte (o, j) and
  // (o, 2j + 1) in the high nibble; bits 5..8: uint8 [out, in].
  at::Tensor qweight;
  at::Tensor scales;  // fp32 [out, groups]
  at::Tensor zeros;   // fp32 [out, groups]; w = (q - zero) * scale
  // int64 [in] or undefined. Act-order checkpoints: the weight's columns are stored sorted by
  // group, and the matmul reads x[..., perm] (column j of qweight is input column perm[j]).
  at::Tensor perm;
  int bits = 4;  // value range (2..8); storage is 4-bit for bits <= 4, else 8-bit
  int64_t group_size = 128, out = 0, in = 0;

  int storage_bits() const { return bits <= 4 ? 4 : 8; }
  // The last group may be partial (in % group_size != 0, e.g. in 576 with groups of 128).
  int64_t groups() const { return (in + group_size - 1) / group_size; }
  IntQTensors to(at::Device device) const;
  int64_t nbytes() const;
};

// From a row-major unpacked [out, in] array of values in [0, 2^bits) and fp32 [out, groups]
// scales/zeros (CPU tensors). perm: `in` column indices or nullptr.
IntQTensors make_intq_tensors(const uint8_t* q, const float* scales, const float* zeros,
                              const int64_t* perm, int bits, int64_t group_size, int64_t out,
                              int64_t in);

// [out, in] in dtype, in the ORIGINAL input-column order (perm undone).
at::Tensor intq_dequantize(const IntQTensors& w, at::ScalarType dtype);
// x [..., in] -> [..., out] in x's dtype; bias [out] or undefined.
at::Tensor intq_linear(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias);

struct Int8Tensors {
  at::Tensor q;            // int8 [out, in]
  at::Tensor scb;          // fp32 [out] row absmax; w = q * scb / 127
  double threshold = 6.0;  // outlier threshold on |x|; 0 disables the decomposition
  // bitsandbytes' arithmetic (its Linear8bitLt): x is cast to fp16 before its outlier columns,
  // row absmax and int8 values are taken (outlier columns still multiply the original x), and
  // the scales are its constants (kernels/cpu/intq_matmul.h). false: x quantized from fp32 with
  // exact 1 / 127^2 scales.
  bool bnb = true;
  int64_t out = 0, in = 0;

  Int8Tensors to(at::Device device) const;
  int64_t nbytes() const;
};

Int8Tensors make_int8_tensors(const int8_t* q, const float* scb, int64_t out, int64_t in,
                              double threshold);
at::Tensor int8_dequantize(const Int8Tensors& w, at::ScalarType dtype);
at::Tensor int8_linear(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias);

namespace ref {
// Plain-libtorch versions for parity tests.
at::Tensor intq_dequantize(const IntQTensors& w, at::ScalarType dtype);
at::Tensor intq_linear(const at::Tensor& x, const IntQTensors& w, const at::Tensor& bias);
at::Tensor int8_dequantize(const Int8Tensors& w, at::ScalarType dtype);
at::Tensor int8_linear(const at::Tensor& x, const Int8Tensors& w, const at::Tensor& bias);
}  // namespace ref

}  // namespace sllm::ops
