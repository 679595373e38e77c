// CudaBackend memory methods and the registration of the backends: the CUDA plugin's
// entry point petal_cuda_plugin_v1 (device count and one backend per GPU; libpetal's
// kernels/plugin/cuda_plugin.cpp loads it) in the CUDA build, sim_backend() in the
// simulator build. Memory and copies go through the runtime layer (runtime.h), which on
// CUDA allocates from the device's stream-ordered pool and stages host copies through
// pinned buffers.
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <petal/device.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/runtime.h"

#ifdef PETAL_SIM_COMPILE
namespace petal::kernels::sim_impl {
void record_sim_host_sync();
}
#endif

namespace petal::kernels::PETAL_CUDA_NS {

void* CudaBackend::allocate(size_t nbytes) {
  activate();
  return rt_malloc(nbytes);
}

void CudaBackend::deallocate(void* ptr) {
  if (ptr == nullptr) return;
  activate();
  rt_free(ptr);
}

void CudaBackend::copy_from_host(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  activate();
  rt_memcpy_h2d(dst, src, nbytes);
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t nbytes) {
  if (nbytes == 0) return;
  activate();
#ifdef PETAL_SIM_COMPILE
  record_sim_host_sync();  // a device-to-host copy waits for the device
#endif
  rt_memcpy_d2h(dst, src, nbytes);
}

void CudaBackend::synchronize() {
  activate();
#ifdef PETAL_SIM_COMPILE
  record_sim_host_sync();
#endif
  rt_synchronize();
}

// Pinned host memory is not tied to a stream: no activate() on the simulator (whose hook runs
// queued copies), only the device made current for the CUDA runtime.
void* CudaBackend::allocate_pinned_host(size_t nbytes) {
#ifndef PETAL_SIM_COMPILE
  rt_set_device(device_);
#endif
  return rt_host_alloc(nbytes);
}

void CudaBackend::deallocate_pinned_host(void* ptr) {
  if (ptr == nullptr) return;
#ifndef PETAL_SIM_COMPILE
  rt_set_device(device_);
#endif
  rt_host_free(ptr);
}

bool CudaBackend::copy_from_host_async(void* dst, const void* src, size_t nbytes,
                                       std::shared_ptr<const void> keep_alive) {
  if (nbytes == 0) return true;
  activate();
  rt_memcpy_h2d_async(dst, src, nbytes, std::move(keep_alive));
  return true;
}

void* CudaBackend::allocate_copy_from_host_async(const void* src, size_t nbytes,
                                                 std::shared_ptr<const void> keep_alive) {
  activate();
  return rt_malloc_h2d_async(src, nbytes, std::move(keep_alive));
}

}  // namespace petal::kernels::PETAL_CUDA_NS

#ifdef PETAL_SIM_COMPILE

namespace petal::kernels::sim_impl {

namespace {
std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}
std::set<std::string>& launch_names() {
  static std::set<std::string> names;
  return names;
}
}  // namespace

void record_sim_launch(const char* name) {
  std::lock_guard<std::mutex> lock(launch_mutex());
  launch_names().emplace(name);
}

namespace {
std::atomic<int64_t> g_host_syncs{0};
}

void record_sim_host_sync() { g_host_syncs.fetch_add(1, std::memory_order_relaxed); }

/// How many times the host has waited for the simulated device in this process (copies to
/// the host and synchronize() calls): what a real GPU would stall the CPU for. Tests count
/// them per training step (tests/test_vit_flowers.cpp), finding this by name (weak).
int64_t host_sync_count() { return g_host_syncs.load(std::memory_order_relaxed); }

/// Names of the kernels the simulator has launched in this process, reduced to the
/// kernel's identifier ("(unary_strided_kernel<T, A>)" -> "unary_strided_kernel").
/// Tests find it by name (see tests/test_cross_backend_kernels.cpp).
std::vector<std::string> launched_kernel_names() {
  std::set<std::string> ids;
  {
    std::lock_guard<std::mutex> lock(launch_mutex());
    for (const std::string& raw : launch_names()) {
      size_t b = raw.find_first_not_of("( ");
      size_t e = raw.find_first_of("<) ", b);
      ids.insert(raw.substr(b, e == std::string::npos ? std::string::npos : e - b));
    }
  }
  return std::vector<std::string>(ids.begin(), ids.end());
}

}  // namespace petal::kernels::sim_impl

namespace petal::kernels {
Backend* sim_backend() {
  static sim_impl::CudaBackend backend(0);
  return &backend;
}
}  // namespace petal::kernels

#else

namespace {
// One backend per GPU, created once; never destroyed, so tensors that outlive static
// destruction can still free their memory.
petal::kernels::Backend* plugin_backend(int index) {
  using petal::kernels::cuda_impl::CudaBackend;
  static std::vector<CudaBackend*>* backends = [] {
    auto* v = new std::vector<CudaBackend*>();
    const int n = petal::kernels::cuda_impl::rt_device_count();
    for (int i = 0; i < n; ++i) v->push_back(new CudaBackend(i));
    return v;
  }();
  if (index < 0 || index >= static_cast<int>(backends->size())) return nullptr;
  return (*backends)[static_cast<size_t>(index)];
}
int plugin_device_count() { return petal::kernels::cuda_impl::rt_device_count(); }
}  // namespace

/// The plugin's one exported entry (kernels/plugin/cuda_plugin.cpp loads it with dlopen/dlsym).
extern "C" __attribute__((visibility("default"))) const petal::kernels::CudaPlugin* petal_cuda_plugin_v1() {
  static const petal::kernels::CudaPlugin plugin{petal::kernels::kCudaPluginAbi, &plugin_device_count,
                                                 &plugin_backend, &petal::kernels::cuda_impl::rt_set_allow_tf32};
  return &plugin;
}

#endif
