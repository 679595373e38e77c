// CudaBackend memory methods and the registration of the backends: cuda_backend(i) and
// petal::cuda::{is_available, device_count} in the CUDA build, sim_backend() in the
// simulator build. Memory and copies go through the runtime layer (runtime.h), which
// on CUDA allocates from the device's stream-ordered pool and stages host copies
// through pinned buffers.
#include <memory>
#include <mutex>
#include <vector>

#include <petal/device.h>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/runtime.h"

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
  rt_memcpy_d2h(dst, src, nbytes);
}

void CudaBackend::synchronize() {
  activate();
  rt_synchronize();
}

}  // namespace petal::kernels::PETAL_CUDA_NS

#ifdef PETAL_SIM_COMPILE

namespace petal::kernels {
Backend* sim_backend() {
  static sim_impl::CudaBackend backend(0);
  return &backend;
}
}  // namespace petal::kernels

#else

namespace petal {
namespace kernels {
Backend* cuda_backend(int index) {
  // One backend per GPU, created once; never destroyed, so tensors that outlive static
  // destruction can still free their memory.
  static std::vector<cuda_impl::CudaBackend*>* backends = [] {
    auto* v = new std::vector<cuda_impl::CudaBackend*>();
    const int n = cuda_impl::rt_device_count();
    for (int i = 0; i < n; ++i) v->push_back(new cuda_impl::CudaBackend(i));
    return v;
  }();
  if (index < 0 || index >= static_cast<int>(backends->size())) return nullptr;
  return (*backends)[static_cast<size_t>(index)];
}
}  // namespace kernels

namespace cuda {
int device_count() { return kernels::cuda_impl::rt_device_count(); }
bool is_available() { return device_count() > 0; }
}  // namespace cuda
}  // namespace petal

#endif
