// GGUF v3 writer: metadata key/values with explicit on-disk types, tensor infos, and tensor data
// aligned to general.alignment, written atomically (temp file + rename). Tensor data is produced
// one tensor at a time while writing, so a model is never held twice in memory.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "io/gguf.h"

namespace sllm::io {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t alignment = 32);

  // Sets (or replaces, keeping its place) a key. Scalars: value is a json number/bool/string of
  // the given type. ARRAY: value is a json array whose elements all have type `elem`.
  void set(const std::string& key, GgufValueType type, nlohmann::json value,
           GgufValueType elem = GgufValueType::UINT8);
  void set_string(const std::string& key, const std::string& v);
  void set_u32(const std::string& key, uint32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  bool has(const std::string& key) const;

  // A tensor of row-major `shape` (GGML's ne reversed) and GGML type `type`; its bytes come from
  // `data` when the file is written and must be exactly the type's size for that shape.
  using Producer = std::function<std::string()>;
  void add_tensor(std::string name, std::vector<int64_t> shape, uint32_t type, Producer data);

  // Writes the file atomically; throws sllm::Error naming the path (and tensor) on failure.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string key;
    GgufValueType type, elem;
    nlohmann::json value;
  };
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    uint32_t type;
    size_t nbytes;
    Producer data;
  };
  uint32_t alignment_;
  std::vector<Entry> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace sllm::io
