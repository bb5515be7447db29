// Whole-file helpers used for every output: atomic replace (tmp + fsync + rename) and read.
#pragma once

#include <string>
#include <string_view>

namespace sllm::io {

// Writes `contents` to "<path>.tmp.<pid>", fsyncs it, renames it over `path` and fsyncs the
// directory. On any failure removes the temp file and throws sllm::Error naming `path`.
void write_file_atomic(const std::string& path, std::string_view contents);

// Reads a whole file; throws sllm::Error naming the path on failure (missing, directory, I/O).
std::string read_file(const std::string& path);

namespace detail {
// Low-level pieces shared with the safetensors writer. A temp file being written: open() creates
// "<path>.tmp.<pid>"; write() appends everything or throws; commit() fsyncs, closes and renames.
// The destructor removes the temp file unless commit() succeeded.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  void write(const void* data, size_t n);
  void commit();
  const std::string& tmp_path() const { return tmp_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  bool done_ = false;
};
}  // namespace detail

}  // namespace sllm::io
