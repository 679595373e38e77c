// CPU memory: 64-byte aligned host allocations (cache-line and AVX-512 friendly).
#include <cstdlib>
#include <cstring>

#include <petal/error.h>

#include "kernels/cpu/cpu_backend.h"

namespace petal::kernels {

void* CpuBackend::allocate(size_t nbytes) {
  size_t rounded = (nbytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
  PETAL_CHECK(p != nullptr, "cpu: out of memory allocating ", nbytes, " bytes");
  return p;
}
void CpuBackend::deallocate(void* ptr) { std::free(ptr); }
void CpuBackend::copy_from_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void CpuBackend::copy_to_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }

Backend* cpu_backend() {
  static CpuBackend backend;
  return &backend;
}

}  // namespace petal::kernels
