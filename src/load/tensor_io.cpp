#include "load/tensor_io.h"

#include <ATen/ATen.h>

#include <fmt/ranges.h>

#include <filesystem>

#include "core/error.h"

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

at::Tensor tensor_from_bytes(const void* data, size_t nbytes, std::vector<int64_t> shape,
                             at::ScalarType st) {
  auto t = at::empty(shape, at::TensorOptions().dtype(st));
  SLLM_CHECK(static_cast<size_t>(t.nbytes()) == nbytes,
             "internal: {} bytes for a tensor of {} bytes", nbytes, t.nbytes());
  if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
  return t;
}

std::string file_of(const io::SafetensorsSet& set, const std::string& name) {
  for (const auto& f : set.files())
    if (f.find(name) != nullptr) return f.path();
  if (set.files().empty()) return "<no safetensors file>";
  return std::filesystem::path(set.files().front().path()).parent_path().string();
}

std::string shape_str(const std::vector<int64_t>& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

void ModuleTensors::fail(const std::string& tensor, const std::string& what) const {
  SLLM_FAIL("{}: tensor '{}' {} ({} module '{}')", file_of(set, tensor), tensor, what, kind,
            module);
}

const io::TensorView& ModuleTensors::need(const std::string& name) const {
  const auto* v = set.find(name);
  if (v == nullptr) fail(name, "is missing");
  return *v;
}

const io::TensorView& ModuleTensors::need(const std::string& name, io::DType d,
                                          const std::vector<std::vector<int64_t>>& shapes,
                                          const std::string& why) const {
  const auto& v = need(name);
  if (v.dtype != d)
    fail(name,
         fmt::format("has dtype {}, expected {}", io::dtype_name(v.dtype), io::dtype_name(d)));
  bool ok = false;
  for (const auto& s : shapes) ok = ok || v.shape == s;
  if (!ok) {
    std::vector<std::string> want;
    for (const auto& s : shapes) want.push_back(shape_str(s));
    fail(name, fmt::format("has shape {}, expected {}{}", shape_str(v.shape),
                           fmt::join(want, " or "), why.empty() ? "" : " (" + why + ")"));
  }
  if (v.nbytes != static_cast<size_t>(v.numel()) * io::dtype_size(d))
    fail(name, fmt::format("holds {} bytes, expected {}", v.nbytes,
                           v.numel() * static_cast<int64_t>(io::dtype_size(d))));
  return v;
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
