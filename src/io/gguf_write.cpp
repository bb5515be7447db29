#include "io/gguf_write.h"

#include <fmt/format.h>

#include <cstring>

#include "core/error.h"
#include "io/atomic_write.h"

namespace sllm::io {
namespace {

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // GGUF is little-endian, as every host sllm runs on
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_scalar(std::string& out, GgufValueType t, const nlohmann::json& v,
                const std::string& key) {
  using V = GgufValueType;
  // json keeps a non-negative integer as signed or unsigned depending on how it was made.
  const bool uint = v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
  auto want = [&](bool ok) {
    SLLM_CHECK(ok, "GGUF metadata '{}': value {} does not fit type {}", key, v.dump(),
               static_cast<int>(t));
  };
  switch (t) {
    case V::UINT8:
      want(uint);
      return put<uint8_t>(out, v.get<uint8_t>());
    case V::INT8:
      want(v.is_number_integer());
      return put<int8_t>(out, v.get<int8_t>());
    case V::UINT16:
      want(uint);
      return put<uint16_t>(out, v.get<uint16_t>());
    case V::INT16:
      want(v.is_number_integer());
      return put<int16_t>(out, v.get<int16_t>());
    case V::UINT32:
      want(uint);
      return put<uint32_t>(out, v.get<uint32_t>());
    case V::INT32:
      want(v.is_number_integer());
      return put<int32_t>(out, v.get<int32_t>());
    case V::UINT64:
      want(uint);
      return put<uint64_t>(out, v.get<uint64_t>());
    case V::INT64:
      want(v.is_number_integer());
      return put<int64_t>(out, v.get<int64_t>());
    case V::FLOAT32:
      want(v.is_number());
      return put<float>(out, v.get<float>());
    case V::FLOAT64:
      want(v.is_number());
      return put<double>(out, v.get<double>());
    case V::BOOL:
      want(v.is_boolean());
      return put<uint8_t>(out, v.get<bool>() ? 1 : 0);
    case V::STRING:
      want(v.is_string());
      return put_string(out, v.get<std::string>());
    case V::ARRAY:
      break;
  }
  SLLM_FAIL("GGUF metadata '{}': type {} is not a scalar type", key, static_cast<int>(t));
}

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  SLLM_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0,
             "GGUF alignment {} is not a power of two", alignment);
  set_u32("general.alignment", alignment);
}

void GgufWriter::set(const std::string& key, GgufValueType type, nlohmann::json value,
                     GgufValueType elem) {
  SLLM_CHECK(type != GgufValueType::ARRAY || value.is_array(),
             "GGUF metadata '{}': an ARRAY value must be a json array", key);
  std::string check;  // a value that does not fit its type fails here, not at write time
  if (type != GgufValueType::ARRAY)
    put_scalar(check, type, value, key);
  else
    for (const auto& v : value) put_scalar(check, elem, v, key);
  for (auto& e : kv_)
    if (e.key == key) {
      e = {key, type, elem, std::move(value)};
      return;
    }
  kv_.push_back({key, type, elem, std::move(value)});
}
void GgufWriter::set_string(const std::string& k, const std::string& v) {
  set(k, GgufValueType::STRING, v);
}
void GgufWriter::set_u32(const std::string& k, uint32_t v) { set(k, GgufValueType::UINT32, v); }
void GgufWriter::set_f32(const std::string& k, float v) { set(k, GgufValueType::FLOAT32, v); }
void GgufWriter::set_bool(const std::string& k, bool v) { set(k, GgufValueType::BOOL, v); }
bool GgufWriter::has(const std::string& key) const {
  for (const auto& e : kv_)
    if (e.key == key) return true;
  return false;
}

void GgufWriter::add_tensor(std::string name, std::vector<int64_t> shape, uint32_t type,
                            Producer data) {
  int64_t block = 0;
  size_t bytes = 0;
  SLLM_CHECK(ggml_type_layout(type, block, bytes), "GGUF tensor '{}': unknown GGML type {}", name,
             type);
  SLLM_CHECK(!shape.empty(), "GGUF tensor '{}' has no dimensions", name);
  int64_t n = 1;
  for (auto d : shape) {
    SLLM_CHECK(d > 0, "GGUF tensor '{}' has a dimension of {}", name, d);
    n *= d;
  }
  SLLM_CHECK(shape.back() % block == 0,
             "GGUF tensor '{}': rows of {} elements are not whole {} blocks of {}", name,
             shape.back(), ggml_type_name(type), block);
  for (const auto& t : tensors_) SLLM_CHECK(t.name != name, "GGUF tensor '{}' added twice", name);
  tensors_.push_back({std::move(name), std::move(shape), type,
                      static_cast<size_t>(n / block) * bytes, std::move(data)});
}

void GgufWriter::write(const std::string& path) const {
  std::string head = "GGUF";
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size());
  for (const auto& e : kv_) {
    put_string(head, e.key);
    put<uint32_t>(head, static_cast<uint32_t>(e.type));
    if (e.type != GgufValueType::ARRAY) {
      put_scalar(head, e.type, e.value, e.key);
      continue;
    }
    put<uint32_t>(head, static_cast<uint32_t>(e.elem));
    put<uint64_t>(head, e.value.size());
    for (const auto& v : e.value) put_scalar(head, e.elem, v, e.key);
  }
  const auto pad = [&](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(head, *it);
    put<uint32_t>(head, t.type);
    put<uint64_t>(head, offset);
    offset = pad(offset + t.nbytes);
  }
  head.resize(pad(head.size()), '\0');
  detail::AtomicFile f(path);
  f.write(head.data(), head.size());
  const std::string zeros(alignment_, '\0');
  for (const auto& t : tensors_) {
    const std::string b = t.data();
    SLLM_CHECK(b.size() == t.nbytes, "GGUF tensor '{}': {} bytes produced, {} expected", t.name,
               b.size(), t.nbytes);
    f.write(b.data(), b.size());
    f.write(zeros.data(), pad(b.size()) - b.size());
  }
  f.commit();
}

}  // namespace sllm::io
