#include "io/tensor_view.h"

namespace sllm::io {

namespace {
struct DTypeInfo {
  DType d;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::f32, "F32", 4}, {DType::f16, "F16", 2},         {DType::bf16, "BF16", 2},
    {DType::f64, "F64", 8}, {DType::i8, "I8", 1},           {DType::u8, "U8", 1},
    {DType::i16, "I16", 2}, {DType::i32, "I32", 4},         {DType::i64, "I64", 8},
    {DType::u32, "U32", 4}, {DType::boolean, "BOOL", 1},    {DType::u16, "U16", 2},
    {DType::u64, "U64", 8}, {DType::f8_e4m3, "F8_E4M3", 1}, {DType::f8_e5m2, "F8_E5M2", 1},
};
}  // namespace

std::string dtype_name(DType d) {
  if (d == DType::gguf_quant) return "GGUF_QUANT";
  for (const auto& i : kDTypes)
    if (i.d == d) return i.name;
  return "DType#" + std::to_string(static_cast<int>(d));
}

size_t dtype_size(DType d) {
  for (const auto& i : kDTypes)
    if (i.d == d) return i.size;
  return 0;
}

bool dtype_from_name(const std::string& name, DType& out) {
  for (const auto& i : kDTypes) {
    if (name == i.name) {
      out = i.d;
      return true;
    }
  }
  return false;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

}  // namespace sllm::io
