// safetensors reader (memory-mapped, fully validated on open), writer (atomic) and a loader for
// Hugging Face model directories (single file or sharded with model.safetensors.index.json).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/mapped_file.h"
#include "io/tensor_view.h"

namespace sllm::io {

class SafetensorsFile {
 public:
  // Validates: 8-byte header length inside the file, header is a JSON object, every entry has a
  // known dtype, a shape of non-negative integers and data_offsets [begin, end] inside the data
  // buffer, end - begin == numel * dtype size, no two tensors overlap; "__metadata__" is a
  // string -> string object.
  static SafetensorsFile open(const std::string& path);

  const std::vector<TensorView>& tensors() const { return tensors_; }  // sorted by data offset
  const TensorView* find(const std::string& name) const;               // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  std::shared_ptr<MappedFile> file_;
  std::string path_;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};

// Writes a valid safetensors file atomically ("<path>.tmp.<pid>", fsync, rename). The header is
// padded with spaces to a multiple of 8; tensor data is laid out in the given order. Throws
// sllm::Error (and removes the temp file) on invalid input (duplicate/empty names, nbytes !=
// numel * dtype size, gguf_quant dtype) or any I/O failure such as a full disk.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// All tensors of a Hugging Face model directory: the shards listed in
// model.safetensors.index.json ("weight_map"; it is authoritative: every listed tensor must be
// in its shard, tensors a shard has but the map does not list are ignored), or else
// model.safetensors.
class SafetensorsSet {
 public:
  static SafetensorsSet open_dir(const std::string& dir);
  SafetensorsSet(SafetensorsSet&&) = default;
  SafetensorsSet& operator=(SafetensorsSet&&) = default;
  SafetensorsSet(const SafetensorsSet&) = delete;  // holds pointers into files_
  SafetensorsSet& operator=(const SafetensorsSet&) = delete;
  const TensorView* find(const std::string& name) const;  // nullptr if absent
  std::vector<const TensorView*> all() const;             // sorted by name
  const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  SafetensorsSet() = default;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, const TensorView*> by_name_;
};

}  // namespace sllm::io
