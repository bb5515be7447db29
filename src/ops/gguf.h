// GGUF block-quantized weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K) kept as stored, as
// libtorch tensors, and the matmuls over them (inference: no gradient reaches the weight). Every
// row of the weight is its GGUF blocks exactly as the file stores them (32 elements per block with
// fp16 scales; K-quants 256-element super-blocks of 32- or 16-element sub-blocks with 6- or 8-bit
// scales), so the bytes are the file's bytes. Two activation paths (GgufTensors::q8_act):
//  - q8: x quantized to int8 per 32-element block (fp32 scale, round to nearest), integer dot
//    products per block (VNNI / AVX2 / scalar), as llama.cpp multiplies Q8 activations;
//  - f32: each weight block decoded to fp32 and multiplied with fp32 x.
// A few rows (decode, batched decode) take the fused kernels; more rows (prefill) dequantize
// tiles of the weight and multiply with at::mm (q8: x rounded through its int8 blocks first, so
// that prefill and decode compute the same products).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace sllm::ops {

struct GgufTensors {
  at::Tensor blocks;  // uint8 [out, in / block_elems() * block bytes]: each row's blocks as stored
  // GGML type id: 2 (Q4_0), 3 (Q4_1), 6 (Q5_0), 7 (Q5_1), 8 (Q8_0), 12 (Q4_K), 13 (Q5_K), 14 (Q6_K)
  int type = 0;
  int64_t out = 0, in = 0;
  bool q8_act = true;  // activations quantized to int8 per 32 elements (false: fp32 activations)

  int64_t block_elems() const;  // 32, or 256 for the K-quants' super-blocks
  int64_t row_bytes() const;
  std::string type_name() const;  // "Q4_1", ...
  GgufTensors to(at::Device device) const;
  int64_t nbytes() const { return static_cast<int64_t>(blocks.nbytes()); }
};

// Whether Linears keep GGML type `type` as stored (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K).
bool gguf_linear_type(uint32_t type);
// From row-major stored blocks (uint8, out rows of whole blocks; copied when not contiguous).
GgufTensors make_gguf_tensors(at::Tensor blocks, uint32_t type, int64_t out, int64_t in,
                              bool q8_act = true);

// [out, in] in dtype (exactly the values ggml's dequantizers give, then converted).
at::Tensor gguf_dequantize(const GgufTensors& w, at::ScalarType dtype);
// Rows ids (any shape of int64) of the dequantized weight: [..., in] in dtype (an embedding
// lookup on a quantized table).
at::Tensor gguf_rows(const GgufTensors& w, const at::Tensor& ids, at::ScalarType dtype);
// x [..., in] -> [..., out] in x's dtype; bias [out] or undefined. With autograd on x, the
// dequantized weight goes through at::linear (the weight itself gets no gradient).
at::Tensor gguf_linear(const at::Tensor& x, const GgufTensors& w, const at::Tensor& bias);

namespace ref {
// Plain-libtorch versions for parity tests: the blocks decoded with tensor ops (not the kernels'
// loops), then at::linear. q8 activations are quantized the same way in tensor ops.
at::Tensor gguf_dequantize(const GgufTensors& w, at::ScalarType dtype);
at::Tensor gguf_linear(const at::Tensor& x, const GgufTensors& w, const at::Tensor& bias);
}  // namespace ref

}  // namespace sllm::ops
