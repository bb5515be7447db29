#include "io/atomic_dir.h"

#include <unistd.h>

#include <filesystem>

#include "core/error.h"

namespace fs = std::filesystem;

namespace sllm::io {

AtomicDir::AtomicDir(std::string dir, bool replace) : dir_(std::move(dir)) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  SLLM_CHECK(!dir_.empty(), "empty output directory name");
  std::error_code ec;
  if (!replace)
    SLLM_CHECK(!fs::exists(dir_) || fs::is_empty(dir_),
               "output directory '{}' exists and is not empty; choose a new path", dir_);
  tmp_ = dir_ + ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp_, ec);
  fs::create_directories(tmp_, ec);
  SLLM_CHECK(!ec, "cannot create directory '{}': {}", tmp_, ec.message());
}

AtomicDir::~AtomicDir() {
  if (done_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

void AtomicDir::commit() {
  std::error_code ec;
  const std::string old = dir_ + ".old-" + std::to_string(::getpid());
  const bool had = fs::exists(dir_);
  if (had) {
    fs::rename(dir_, old, ec);
    SLLM_CHECK(!ec, "cannot move '{}' aside: {}", dir_, ec.message());
  }
  fs::rename(tmp_, dir_, ec);
  if (ec) {
    if (had) fs::rename(old, dir_);
    SLLM_FAIL("cannot rename '{}' to '{}': {}", tmp_, dir_, ec.message());
  }
  done_ = true;
  if (had) fs::remove_all(old, ec);
}

}  // namespace sllm::io
