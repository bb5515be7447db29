#include "ops/cuda_plugin.h"

#include <ATen/Context.h>
#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "core/log.h"

namespace sllm::ops {
namespace {

// Where the plugin may be: $SLLM_CUDA_PLUGIN, next to the executable, the build directory.
std::vector<std::string> candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("SLLM_CUDA_PLUGIN")) out.emplace_back(env);
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((exe.parent_path() / "libsllm_cuda_ops.so").string());
    out.push_back((exe.parent_path().parent_path() / "libsllm_cuda_ops.so").string());
  }
#ifdef SLLM_CUDA_PLUGIN_PATH
  out.emplace_back(SLLM_CUDA_PLUGIN_PATH);
#endif
  return out;
}

const CudaOps* load() {
#ifndef SLLM_HAVE_CUDA
  return nullptr;
#else
  for (const auto& path : candidates()) {
    if (!std::filesystem::exists(path)) continue;
    void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
      log::warn("cannot load the CUDA plugin {}: {}", path, ::dlerror());
      continue;
    }
    using Entry = const CudaOps* (*)();
    auto entry = reinterpret_cast<Entry>(::dlsym(h, "sllm_cuda_ops_v1"));
    const CudaOps* ops = entry ? entry() : nullptr;
    if (ops && ops->abi_version == kCudaOpsAbi) {
      log::debug("CUDA plugin loaded from {}", path);
      return ops;
    }
    log::warn("{} is not a matching sllm CUDA plugin", path);
  }
  log::debug("no CUDA plugin found: CUDA devices are unavailable");
  return nullptr;
#endif
}

}  // namespace

const CudaOps* cuda_ops() {
  static const CudaOps* ops = load();
  return ops;
}

bool cuda_available() { return cuda_ops() != nullptr && at::hasCUDA(); }

CudaPeakMemory cuda_peak_memory(int device) {
  CudaPeakMemory m;
  if (const auto* ops = cuda_ops()) ops->peak_memory(device, &m.allocated, &m.reserved);
  return m;
}

}  // namespace sllm::ops
