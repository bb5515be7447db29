// at::Tensor <-> safetensors: owned copies of file tensors and writing named tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "io/tensor_view.h"

namespace sllm::load {

// An owned CPU copy of a (non-GGUF-quantized) file tensor in its stored dtype.
at::Tensor tensor_from_view(const io::TensorView& v);

// Every tensor of a safetensors file, in file order.
std::vector<std::pair<std::string, at::Tensor>> read_tensors(const std::string& path);

// Writes tensors (any device, made CPU-contiguous) atomically as safetensors.
void write_tensors(const std::string& path,
                   const std::vector<std::pair<std::string, at::Tensor>>& tensors);

}  // namespace sllm::load
