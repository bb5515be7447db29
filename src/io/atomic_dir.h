// A directory written all at once: files go into "<dir>.tmp-<pid>", commit() renames it into
// place (replacing an existing directory only after the new one is complete). If anything
// fails before commit, the temp directory is removed and an existing `dir` is untouched.
#pragma once

#include <string>

namespace sllm::io {

class AtomicDir {
 public:
  // replace=false: `dir` must not exist or be empty (error otherwise, before any writing).
  AtomicDir(std::string dir, bool replace);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::string& path() const { return tmp_; }  // where to write the files
  std::string file(const std::string& name) const { return tmp_ + "/" + name; }
  void commit();

 private:
  std::string dir_, tmp_;
  bool done_ = false;
};

}  // namespace sllm::io
