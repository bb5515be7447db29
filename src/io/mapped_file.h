// Read-only memory map of a whole file. Throws sllm::Error naming the path when the file cannot
// be opened or mapped, is not a regular file, or is empty.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sllm::io {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Drops the resident pages of [p, p + n) (p must point into this file). The mapping stays
  // valid: a later read faults the pages back in from the page cache. Loaders call it after
  // converting a tensor, so a model's file does not stay resident next to its converted copy.
  static void drop_pages(const void* p, size_t n) noexcept;

 private:
  void release() noexcept;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace sllm::io
