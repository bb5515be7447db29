#include "model/linear.h"

#include <ATen/ATen.h>

namespace sllm::model {

at::Tensor Linear::forward(const at::Tensor& x) const { return at::linear(x, weight, bias); }

std::string Linear::format_name() const {
  switch (format) {
    case WeightFormat::dense:
      return std::string("dense ") + std::string(weight.dtype().name());
  }
  return "unknown";
}

}  // namespace sllm::model
