// The storage formats of a Linear's weight, one struct each: dense, bitsandbytes NF4/FP4,
// group-wise int-N (GPTQ, AWQ, RTN), LLM.int8() and GGUF blocks (Q4_0, Q4_1, Q8_0) as stored. Every
// struct holds the whole (possibly fused) weight and has the same members, so that Linear
// dispatches with one std::visit and a new format is one struct (plus its kernels):
//   kind                 short name ("dense", "nf4", ...)
//   forward(x, bias)     x [..., in] -> [..., out]
//   dequantize()         [out, in]: the stored tensor for dense, fp32 for the others
//   name()               "dense Float", "nf4 (blocksize 64, double quant)", ...
//   nbytes(), in(), out(), device()
//   to(device, dtype)    moved copy; dtype converts dense weights only (quantized ones keep theirs)
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ops/gguf.h"
#include "ops/intq.h"
#include "ops/nf4.h"

namespace sllm::quant {
struct Nf4Weight;
struct IntQWeight;
struct Int8Weight;
}  // namespace sllm::quant

namespace sllm::model {

// A float weight [out, in].
struct DenseFormat {
  static constexpr std::string_view kind = "dense";
  at::Tensor w;

  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias) const;
  at::Tensor dequantize() const { return w; }
  std::string name() const;
  int64_t nbytes() const;
  int64_t in() const { return w.size(1); }
  int64_t out() const { return w.size(0); }
  at::Device device() const { return w.device(); }
  DenseFormat to(at::Device device, std::optional<at::ScalarType> dtype) const;
};

// What the quantized formats share: their ops tensors, which know their size and shape.
template <typename Tensors>
struct QuantizedFormat {
  Tensors t;

  int64_t nbytes() const { return t.nbytes(); }
  int64_t in() const { return t.in; }
  int64_t out() const { return t.out; }
};

// bitsandbytes NF4/FP4; blocks never straddle the parts of a fused weight.
struct Nf4Format : QuantizedFormat<ops::Nf4Tensors> {
  static constexpr std::string_view kind = "nf4";
  // One quant state per part, exactly as bitsandbytes stores it (for saving); the packed bytes
  // live in t.packed, so their weight vectors are empty.
  std::vector<std::shared_ptr<const quant::Nf4Weight>> states;

  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias) const;
  at::Tensor dequantize() const;
  std::string name() const;
  at::Device device() const { return t.packed.device(); }
  Nf4Format to(at::Device device, std::optional<at::ScalarType> dtype) const;
};

// Group-wise int2..int8 with scales and zero points.
struct IntQFormat : QuantizedFormat<ops::IntQTensors> {
  static constexpr std::string_view kind = "intq";
  // The method that made it, which also picks the checkpoint layout it is saved in:
  // "gptq" and "rtn" -> GPTQ v1 (qweight/qzeros/scales/g_idx), "awq" -> AWQ GEMM.
  std::string method;
  bool sym = false;

  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias) const;
  at::Tensor dequantize() const;
  std::string name() const;
  at::Device device() const { return t.qweight.device(); }
  IntQFormat to(at::Device device, std::optional<at::ScalarType> dtype) const;
  // Output rows [offset, offset + rows) as the quant layer holds them (input order, g_idx), for
  // saving.
  quant::IntQWeight slice(int64_t offset, int64_t rows) const;
};

// LLM.int8(): row-wise int8 with outlier decomposition.
struct Int8Format : QuantizedFormat<ops::Int8Tensors> {
  static constexpr std::string_view kind = "int8";

  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias) const;
  at::Tensor dequantize() const;
  std::string name() const;
  at::Device device() const { return t.q.device(); }
  Int8Format to(at::Device device, std::optional<at::ScalarType> dtype) const;
  quant::Int8Weight slice(int64_t offset, int64_t rows) const;  // as IntQFormat::slice
};

// GGUF blocks as the file stores them (ops/gguf.h): a GGUF model's Linears and its tied output
// head run on them without a dense copy. A fused weight whose parts the file stores in different
// types (a Q4_K_M file's q|k|v with a Q6_K or Q8_0 v) keeps one piece per run of parts of one
// type, stacked along the output rows; forward runs each piece's kernels into its output columns.
struct GgufFormat {
  static constexpr std::string_view kind = "gguf";
  std::vector<ops::GgufTensors> pieces;  // at least one; same in, outs stacked

  at::Tensor forward(const at::Tensor& x, const at::Tensor& bias) const;
  at::Tensor dequantize() const;
  std::string name() const;  // "gguf Q4_1 (int8 activations)", "gguf Q5_0 + Q8_0 (...)"
  int64_t nbytes() const;
  int64_t in() const { return pieces.front().in; }
  int64_t out() const;
  at::Device device() const { return pieces.front().blocks.device(); }
  GgufFormat to(at::Device device, std::optional<at::ScalarType> dtype) const;
  // The one piece of a weight stored in one type (an embedding table, a head); an error otherwise.
  const ops::GgufTensors& only() const;
  // The piece holding output rows [off, off + rows) and the offset of off inside it; nullptr when
  // the rows span pieces.
  const ops::GgufTensors* piece_of(int64_t off, int64_t rows, int64_t* inside) const;
};

using LinearWeight = std::variant<DenseFormat, Nf4Format, IntQFormat, Int8Format, GgufFormat>;

// std::visit over several lambdas: std::visit(Overloaded{[](const DenseFormat&) {}, ...}, w).
template <class... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

}  // namespace sllm::model
