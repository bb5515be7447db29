#include "load/tensor_io.h"

#include <ATen/ATen.h>

#include "core/error.h"
#include "io/safetensors.h"

namespace sllm::load {
namespace {

at::ScalarType scalar_of(io::DType d, const std::string& name) {
  switch (d) {
    case io::DType::f32:
      return at::kFloat;
    case io::DType::f16:
      return at::kHalf;
    case io::DType::bf16:
      return at::kBFloat16;
    case io::DType::f64:
      return at::kDouble;
    case io::DType::i8:
      return at::kChar;
    case io::DType::u8:
      return at::kByte;
    case io::DType::i16:
      return at::kShort;
    case io::DType::i32:
      return at::kInt;
    case io::DType::i64:
      return at::kLong;
    case io::DType::boolean:
      return at::kBool;
    default:
      SLLM_FAIL("tensor '{}' has dtype {}, which sllm cannot hold as a tensor", name,
                io::dtype_name(d));
  }
}

io::DType dtype_of(at::ScalarType s) {
  switch (s) {
    case at::kFloat:
      return io::DType::f32;
    case at::kHalf:
      return io::DType::f16;
    case at::kBFloat16:
      return io::DType::bf16;
    case at::kDouble:
      return io::DType::f64;
    case at::kChar:
      return io::DType::i8;
    case at::kByte:
      return io::DType::u8;
    case at::kShort:
      return io::DType::i16;
    case at::kInt:
      return io::DType::i32;
    case at::kLong:
      return io::DType::i64;
    case at::kBool:
      return io::DType::boolean;
    default:
      SLLM_FAIL("cannot write tensors of dtype {}", c10::toString(s));
  }
}

}  // namespace

at::Tensor tensor_from_view(const io::TensorView& v) {
  SLLM_CHECK(v.dtype != io::DType::gguf_quant, "tensor '{}' is block-quantized", v.name);
  return at::from_blob(const_cast<uint8_t*>(v.data), v.shape,
                       at::TensorOptions().dtype(scalar_of(v.dtype, v.name)))
      .clone();
}

std::vector<std::pair<std::string, at::Tensor>> read_tensors(const std::string& path) {
  auto f = io::SafetensorsFile::open(path);
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& v : f.tensors()) out.emplace_back(v.name, tensor_from_view(v));
  return out;
}

void write_tensors(const std::string& path,
                   const std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  std::vector<at::Tensor> keep;
  std::vector<io::TensorToWrite> w;
  keep.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    keep.push_back(t.detach().to(at::kCPU).contiguous());
    const auto& k = keep.back();
    w.push_back({name, dtype_of(k.scalar_type()), k.sizes().vec(), k.data_ptr(), k.nbytes()});
  }
  io::write_safetensors(path, w, {{"format", "pt"}});
}

}  // namespace sllm::load
