#include "io/atomic_write.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace sllm::io {
namespace detail {
namespace {
// Fault injection for tests: SLLM_TEST_DISK_FULL_AFTER=N makes output writes fail with ENOSPC
// once N bytes have been written by this process, exactly as a full disk would.
int64_t disk_full_budget() {
  static const int64_t budget = [] {
    const char* v = std::getenv("SLLM_TEST_DISK_FULL_AFTER");
    return v ? std::strtoll(v, nullptr, 10) : int64_t{-1};
  }();
  return budget;
}
int64_t g_written = 0;
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  SLLM_CHECK(!path_.empty(), "cannot write a file with an empty path");
  tmp_ = path_ + ".tmp." + std::to_string(::getpid());
  do {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  } while (fd_ < 0 && errno == EINTR);
  if (fd_ < 0)
    SLLM_FAIL("cannot write '{}': cannot create '{}': {}", path_, tmp_, std::strerror(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const size_t chunk = n < (size_t{1} << 30) ? n : (size_t{1} << 30);
    if (disk_full_budget() >= 0 && g_written + static_cast<int64_t>(chunk) > disk_full_budget())
      SLLM_FAIL("cannot write '{}': {}", path_, std::strerror(ENOSPC));
    const ssize_t w = ::write(fd_, p, chunk);
    if (w > 0) g_written += w;
    if (w < 0) {
      if (errno == EINTR) continue;
      SLLM_FAIL("cannot write '{}': {}", path_, std::strerror(errno));
    }
    if (w == 0) SLLM_FAIL("cannot write '{}': write returned 0 (disk full?)", path_);
    p += w;
    n -= static_cast<size_t>(w);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0)
    SLLM_FAIL("cannot write '{}': fsync failed: {}", path_, std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0)
    SLLM_FAIL("cannot write '{}': close failed: {}", path_, std::strerror(errno));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    SLLM_FAIL("cannot write '{}': rename from '{}' failed: {}", path_, tmp_, std::strerror(errno));
  done_ = true;
  // Make the rename durable; failure here is not fatal (some filesystems refuse dir fsync).
  std::string dir = std::filesystem::path(path_).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace detail

void write_file_atomic(const std::string& path, std::string_view contents) {
  detail::AtomicFile f(path);
  f.write(contents.data(), contents.size());
  f.commit();
}

std::string read_file(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) SLLM_FAIL("cannot read '{}': {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    SLLM_FAIL("cannot read '{}': it is a directory, expected a file", path);
  }
  std::string out;
  if (st.st_size > 0 && S_ISREG(st.st_mode)) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      SLLM_FAIL("cannot read '{}': {}", path, std::strerror(e));
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

}  // namespace sllm::io
