// at::Tensor <-> safetensors: owned copies of file tensors, checked reads of a stored module's
// tensors, and writing named tensors.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"
#include "io/tensor_view.h"

namespace sllm::load {

// An owned CPU copy of a (non-GGUF-quantized) file tensor in its stored dtype.
at::Tensor tensor_from_view(const io::TensorView& v);

// An owned CPU tensor of `shape` and dtype st holding a copy of the nbytes at data (which must be
// exactly its size).
at::Tensor tensor_from_bytes(const void* data, size_t nbytes, std::vector<int64_t> shape,
                             at::ScalarType st);
template <typename T>
at::Tensor tensor_of(const std::vector<T>& v, std::vector<int64_t> shape, at::ScalarType st) {
  return tensor_from_bytes(v.data(), v.size() * sizeof(T), std::move(shape), st);
}

// Every tensor of a safetensors file, in file order.
std::vector<std::pair<std::string, at::Tensor>> read_tensors(const std::string& path);

// The file of the set that holds `name` (for messages); the directory when no file has it.
std::string file_of(const io::SafetensorsSet& set, const std::string& name);
std::string shape_str(const std::vector<int64_t>& shape);  // "[2, 3]"

// One stored module's tensors (a bitsandbytes, GPTQ, AWQ, ... module) with the checks every
// layout reader needs. Errors name the file, the tensor, the kind of module and the module.
struct ModuleTensors {
  const io::SafetensorsSet& set;
  std::string module, kind;  // kind: "GPTQ", "4-bit bitsandbytes", ...

  [[noreturn]] void fail(const std::string& tensor, const std::string& what) const;
  const io::TensorView* find(const std::string& name) const { return set.find(name); }
  const io::TensorView& need(const std::string& name) const;  // present
  // Present, of dtype d, in one of the accepted shapes (why, if given, explains them), and of
  // exactly the size they imply.
  const io::TensorView& need(const std::string& name, io::DType d,
                             const std::vector<std::vector<int64_t>>& shapes,
                             const std::string& why = "") const;
  // The values copied out (file data need not be aligned for T).
  template <typename T>
  std::vector<T> values(const io::TensorView& v) const {
    std::vector<T> out(v.nbytes / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), v.data, v.nbytes);
    return out;
  }
};

// Writes tensors (any device, made CPU-contiguous) atomically as safetensors.
void write_tensors(const std::string& path,
                   const std::vector<std::pair<std::string, at::Tensor>>& tensors);

}  // namespace sllm::load
