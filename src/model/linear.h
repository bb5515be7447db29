// A linear layer whose weight has a storage format (weight_format.h: dense, NF4/FP4, int-N,
// LLM.int8), optionally fused
// from several Hugging Face modules (q|k|v, gate|up) and optionally carrying LoRA adapters on
// any of those modules. QLoRA is this same Linear with an NF4 weight and adapters.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <string_view>
#include <vector>

#include "model/weight_format.h"

namespace sllm::model {

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
  // 0: applies to every row. k > 0: one of several adapters served together, applied only to
  // the rows a ServedAdapterRows scope lists for k (none without a scope).
  int32_t served_id = 0;
};

struct Linear {
  Linear() = default;
  // A dense weight (and bias); parts, formats and adapters are filled in by their builders.
  explicit Linear(at::Tensor w, at::Tensor b = {})
      : weight(DenseFormat{std::move(w)}), bias(std::move(b)) {}

  LinearWeight weight;            // the whole (fused) weight in its storage format
  at::Tensor bias;                // [out] or undefined
  std::vector<LinearPart> parts;  // output-row order; sums to out_features()
  std::vector<LoraAdapter> lora;

  template <typename F>
  bool is() const {
    return std::holds_alternative<F>(weight);
  }
  template <typename F>
  const F* get_if() const {
    return std::get_if<F>(&weight);
  }
  // The weight as format F; throws sllm::Error naming both formats when it is another one.
  template <typename F>
  const F& get() const {
    if (const auto* f = std::get_if<F>(&weight)) return *f;
    wrong_format(F::kind);
  }
  template <typename F>
  F& get() {
    if (auto* f = std::get_if<F>(&weight)) return *f;
    wrong_format(F::kind);
  }
  // The dense weight [out, in] (an error for quantized formats).
  const at::Tensor& dense_weight() const { return get<DenseFormat>().w; }
  at::Tensor& dense_weight() { return get<DenseFormat>().w; }
  std::string_view kind() const;  // the format's kind: "dense", "nf4", "intq", "int8"

  // Base matmul plus adapters. LoRA dropout is active only inside a TrainingScope.
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor base_forward(const at::Tensor& x) const;
  at::Device device() const;
  int64_t in_features() const;
  int64_t out_features() const;
  // Row offset of part i in the fused output.
  int64_t part_offset(int i) const;
  int part_index(const std::string& name) const;  // -1 if absent
  // Dense weight of part i: as stored for dense, dequantized to fp32 otherwise, on the weight's
  // device.
  at::Tensor dense_part(int i) const;
  std::string format_name() const;  // "dense Float", "nf4 (blocksize 64, double quant)"
  int64_t weight_bytes() const;
  // Part i's quantized values as the quant layer holds them (formats intq / int8), for saving.
  quant::IntQWeight intq_part(int i) const;
  quant::Int8Weight int8_part(int i) const;
  // A copy on device: dense weights and the bias converted to dtype when given (quantized
  // weights keep their format), LoRA adapters moved only.
  Linear to(at::Device device, std::optional<at::ScalarType> dtype = std::nullopt) const;

 private:
  [[noreturn]] void wrong_format(std::string_view want) const;
  at::Tensor add_served(const at::Tensor& x, at::Tensor y) const;
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

// Several adapters in one batch (multi-LoRA serving): while alive on this thread, the adapter
// of served_id k applies to the rows rows_by_id[k] (int64 indices into x flattened to
// [rows, in]; undefined or absent: no row). Only decoder Linears see every token row.
class ServedAdapterRows {
 public:
  explicit ServedAdapterRows(std::vector<at::Tensor> rows_by_id);
  ~ServedAdapterRows();
  ServedAdapterRows(const ServedAdapterRows&) = delete;
  ServedAdapterRows& operator=(const ServedAdapterRows&) = delete;
  // The rows of adapter k, or null.
  static const at::Tensor* rows(int32_t k);

 private:
  std::vector<at::Tensor> rows_;
  const std::vector<at::Tensor>* prev_;
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
