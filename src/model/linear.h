// A linear layer whose weight has a storage format. Today: dense (fp32/bf16/fp16).
// The format tag is what `sllm info` prints and what quantized formats extend.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace sllm::model {

enum class WeightFormat { dense };

struct Linear {
  at::Tensor weight;  // [out, in]
  at::Tensor bias;    // [out] or undefined
  WeightFormat format = WeightFormat::dense;

  at::Tensor forward(const at::Tensor& x) const;
  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }
  std::string format_name() const;
};

}  // namespace sllm::model
