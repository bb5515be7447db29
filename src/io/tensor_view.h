// Shared description of a tensor stored in a (memory-mapped) file: GGUF or safetensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace sllm::io {

enum class DType {
  f32,
  f16,
  bf16,
  f64,
  i8,
  u8,
  i16,
  i32,
  i64,
  u32,
  boolean,
  gguf_quant,  // block-quantized GGUF type; see TensorView::ggml_type
  u16,
  u64,
  f8_e4m3,
  f8_e5m2,
};

// Safetensors spellings: "F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "U32",
// "BOOL", "U16", "U64", "F8_E4M3", "F8_E5M2"; gguf_quant -> "GGUF_QUANT".
std::string dtype_name(DType d);
// Bytes per element; 0 for gguf_quant.
size_t dtype_size(DType d);
// Inverse of dtype_name for safetensors dtypes; false if unknown (GGUF_QUANT is not accepted).
bool dtype_from_name(const std::string& name, DType& out);

struct TensorView {
  std::string name;
  DType dtype = DType::f32;
  uint32_t ggml_type = 0;         // raw GGML type id when the source is GGUF (0 otherwise)
  std::vector<int64_t> shape;     // row-major (PyTorch order); for GGUF this is ne reversed
  const uint8_t* data = nullptr;  // points into the mapped file
  size_t nbytes = 0;
  int64_t numel() const;  // product of shape (1 for a scalar)
};

}  // namespace sllm::io
