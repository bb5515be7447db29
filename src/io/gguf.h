// GGUF (v2/v3, little-endian) reader. The whole file is validated when opened: every length,
// count and offset is checked against the file size, so a corrupt file gives one clear
// sllm::Error instead of a crash. Tensor data stays in the memory map and is exposed as
// TensorView (row-major shape, i.e. GGML's ne reversed).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/mapped_file.h"
#include "io/tensor_view.h"

namespace sllm::io {

enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

// "F32", "Q4_1", ...; "type#N" for an unknown id.
std::string ggml_type_name(uint32_t t);
// Block size (elements) and bytes per block of a GGML type; false if the type is unknown.
bool ggml_type_layout(uint32_t t, int64_t& block_elems, size_t& block_bytes);
// Whether dequantize_to_f32 supports this GGML type.
bool ggml_type_dequant_supported(uint32_t t);

// GGUF metadata value types (the on-disk ids).
enum class GgufValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

class GgufFile {
 public:
  // with_data false reads the header, metadata and tensor infos only (a tokenizer, a config, the
  // tensors' shapes and types): the tensors get no data pointers, and a file whose tensor data
  // is truncated or absent still opens.
  static GgufFile open(const std::string& path, bool with_data = true);

  uint32_t version() const { return version_; }
  // All key/values: integers as json integers (u64 unsigned), bool, floats as double,
  // strings as strings, arrays as json arrays.
  const nlohmann::json& metadata() const { return metadata_; }
  bool has(const std::string& key) const { return metadata_.contains(key); }
  // On-disk value type of a key (for arrays, ARRAY); throws if missing.
  GgufValueType value_type(const std::string& key) const;

  // Typed getters: throw sllm::Error naming the file and key if missing or of the wrong type.
  // get_int accepts any integer type (and fails if a u64 does not fit int64);
  // get_float accepts floats and integers.
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  // Default only when the key is absent; a present key of the wrong type still throws.
  std::string get_string_or(const std::string& key, const std::string& def) const;
  int64_t get_int_or(const std::string& key, int64_t def) const;
  double get_float_or(const std::string& key, double def) const;

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;  // nullptr if absent
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }  // start of the tensor data section
  const std::string& path() const { return path_; }

 private:
  GgufFile() = default;
  std::shared_ptr<MappedFile> file_;
  std::string path_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  nlohmann::json metadata_ = nlohmann::json::object();
  std::unordered_map<std::string, GgufValueType> value_types_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

// Dequantizes/converts any supported tensor to float32, row-major, into dst (numel floats).
// GGUF tensors use ggml_type (F32, F16, BF16, F64, I8/I16/I32/I64, Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q8_1, Q2_K..Q6_K, Q8_K, IQ4_NL, IQ4_XS); other views use dtype (float and integer
// dtypes; BOOL as 0/1; not F8). Throws sllm::Error naming the tensor and type otherwise, or
// if nbytes does not match shape.
void dequantize_to_f32(const TensorView& t, float* dst);

}  // namespace sllm::io
