// A linear layer whose weight has a storage format (dense, or NF4/FP4 4-bit), optionally fused
// from several Hugging Face modules (q|k|v, gate|up) and optionally carrying LoRA adapters on
// any of those modules. QLoRA is this same Linear with an NF4 weight and adapters.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "ops/intq.h"
#include "ops/nf4.h"

namespace sllm::quant {
struct Nf4Weight;
struct IntQWeight;
struct Int8Weight;
}  // namespace sllm::quant

namespace sllm::model {

// dense: a float weight. nf4: bitsandbytes NF4/FP4. intq: group-wise int4/int8 with scales and
// zero points (GPTQ, AWQ, RTN). int8: LLM.int8() row-wise int8 with outlier decomposition.
enum class WeightFormat { dense, nf4, intq, int8 };

// One Hugging Face module inside a (possibly fused) Linear: e.g. "self_attn.k_proj", whose
// output rows follow the q_proj rows in the fused qkv weight.
struct LinearPart {
  std::string name;  // module path below "model.layers.N." ("self_attn.q_proj"), or "lm_head"
  int64_t rows = 0;
};

// y[..., part rows] += scale * B(A(dropout(x))). PEFT names: lora_A.weight = A, lora_B.weight = B.
struct LoraAdapter {
  int part = 0;        // index into Linear::parts
  at::Tensor A;        // [r, in]
  at::Tensor B;        // [rows, r]
  double scale = 1.0;  // alpha / r, or alpha / sqrt(r) with rsLoRA
  double dropout = 0.0;
};

struct Linear {
  Linear() = default;
  // A dense weight (and bias); parts, formats and adapters are filled in by their builders.
  explicit Linear(at::Tensor w, at::Tensor b = {}) : weight(std::move(w)), bias(std::move(b)) {}

  at::Tensor weight;  // dense: [out, in]; undefined when the format is nf4
  at::Tensor bias;    // [out] or undefined
  WeightFormat format = WeightFormat::dense;
  std::vector<LinearPart> parts;  // output-row order; sums to out_features()
  ops::Nf4Tensors nf4;  // format nf4: the whole (fused) weight, blocks never straddle parts
  // format nf4: the quantized parts exactly as bitsandbytes stores them (for saving).
  std::vector<std::shared_ptr<const quant::Nf4Weight>> nf4_parts;
  ops::IntQTensors intq;  // format intq: the whole (fused) weight
  // format intq: the method that made it, which also picks the checkpoint layout it is saved in:
  // "gptq" and "rtn" -> GPTQ v1 (qweight/qzeros/scales/g_idx), "awq" -> AWQ GEMM.
  std::string intq_method;
  bool intq_sym = false;
  ops::Int8Tensors int8;  // format int8
  std::vector<LoraAdapter> lora;

  // Base matmul plus adapters. LoRA dropout is active only inside a TrainingScope.
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor base_forward(const at::Tensor& x) const;
  at::Device device() const;
  int64_t in_features() const;
  int64_t out_features() const;
  // Row offset of part i in the fused output.
  int64_t part_offset(int i) const;
  int part_index(const std::string& name) const;  // -1 if absent
  // Dense weight of part i (dequantized for nf4), fp32 on the weight's device.
  at::Tensor dense_part(int i) const;
  std::string format_name() const;  // "dense Float", "nf4 (blocksize 64, double quant)"
  int64_t weight_bytes() const;
  // Part i's quantized values as the quant layer holds them (formats intq / int8), for saving.
  quant::IntQWeight intq_part(int i) const;
  quant::Int8Weight int8_part(int i) const;
};

// Training mode (as nn.Module.train()): while one is alive on this thread, LoRA dropout is on.
// Thread-local, so that inference threads sharing the model never see it.
class TrainingScope {
 public:
  explicit TrainingScope(bool on = true);
  ~TrainingScope();
  TrainingScope(const TrainingScope&) = delete;
  TrainingScope& operator=(const TrainingScope&) = delete;
  static bool active();

 private:
  bool prev_;
};

// A 4-bit Linear from its quantized parts (one per Hugging Face module, in output-row order).
// The packed bytes move into the compute tensors (the parts keep only their quant state);
// each part must fill whole blocks so that no block straddles two parts.
Linear make_nf4_linear(std::vector<LinearPart> parts, std::vector<quant::Nf4Weight> q,
                       at::Tensor bias);

// Integer-quantized Linears from their parts (one per Hugging Face module, in output-row order;
// all parts share in_features, bits, group size and g_idx).
Linear make_intq_linear(std::vector<LinearPart> parts, const std::vector<quant::IntQWeight>& q,
                        at::Tensor bias, std::string method);
Linear make_int8_linear(std::vector<LinearPart> parts, const std::vector<quant::Int8Weight>& q,
                        at::Tensor bias, double threshold = 6.0);

}  // namespace sllm::model
