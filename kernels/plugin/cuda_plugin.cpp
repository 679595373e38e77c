// libpetal's side of the CUDA backend plugin: petal::cuda::{device_count, is_available} and
// kernels::cuda_backend(i) load libpetal_cuda (the kernels/cuda sources, the CUDA runtime and
// cuBLASLt) with dlopen on first use, so libpetal itself links no CUDA library and the cpu
// and sim devices work where the CUDA runtime is absent. The plugin is looked for in
// PETAL_CUDA_PLUGIN (a path) when set, else beside libpetal (its own directory, found with
// dladdr), else on the loader's search path. A plugin that cannot be loaded means no CUDA
// device: device_count() is 0, and using a cuda device is an error that says why.
#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include <petal/device.h>
#include <petal/error.h>

#include "kernels/backend.h"

namespace petal {
namespace {

constexpr const char* kPluginName = "libpetal_cuda.so.0";

struct LoadedPlugin {
  const kernels::CudaPlugin* table = nullptr;
  std::string error;  // why it could not be loaded (empty when loaded)
};

std::string own_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&own_directory), &info) == 0 || info.dli_fname == nullptr) return "";
  const std::string path(info.dli_fname);
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash + 1);
}

LoadedPlugin load() {
  LoadedPlugin result;
  std::string tried;
  void* handle = nullptr;
  auto attempt = [&](const std::string& path) {
    if (handle != nullptr || path.empty()) return;
    handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      tried += (tried.empty() ? "" : "; ") + path + ": " + (why != nullptr ? why : "unknown error");
    }
  };
  const char* env = std::getenv("PETAL_CUDA_PLUGIN");
  if (env != nullptr && *env != '\0') {
    attempt(env);  // an explicit path only
  } else {
    attempt(own_directory() + kPluginName);
    attempt(kPluginName);
  }
  if (handle == nullptr) {
    result.error = "the CUDA backend plugin could not be loaded (" + tried + ")";
    return result;
  }
  using Entry = const kernels::CudaPlugin* (*)();
  auto entry = reinterpret_cast<Entry>(dlsym(handle, "petal_cuda_plugin_v1"));
  if (entry == nullptr) {
    result.error = std::string("the CUDA backend plugin has no entry petal_cuda_plugin_v1 (") + kPluginName + ")";
    return result;
  }
  const kernels::CudaPlugin* table = entry();
  if (table == nullptr || table->abi != kernels::kCudaPluginAbi) {
    result.error = std::string("the CUDA backend plugin ") + kPluginName + " was built for another petal (ABI " +
                   std::to_string(table != nullptr ? table->abi : -1) + ", expected " +
                   std::to_string(kernels::kCudaPluginAbi) + ")";
    return result;
  }
  result.table = table;
  table->set_allow_tf32(float32_matmul_precision() != "highest");
  return result;  // the handle stays open for the life of the process
}

const LoadedPlugin& plugin() {
  static const LoadedPlugin loaded = load();
  return loaded;
}

}  // namespace

namespace cuda {
int device_count() {
  const LoadedPlugin& p = plugin();
  return p.table != nullptr ? p.table->device_count() : 0;
}
bool is_available() { return device_count() > 0; }
}  // namespace cuda

namespace kernels {
void cuda_apply_matmul_precision(bool allow_tf32) {
  const LoadedPlugin& p = plugin();
  if (p.table != nullptr) p.table->set_allow_tf32(allow_tf32);
}

Backend* cuda_backend(int index) {
  const LoadedPlugin& p = plugin();
  PETAL_CHECK(p.table != nullptr, "device 'cuda:", index, "' is not available: ", p.error);
  return p.table->backend(index);
}
}  // namespace kernels
}  // namespace petal
