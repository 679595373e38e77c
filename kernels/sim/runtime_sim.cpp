// The simulator's side of the CUDA backend's runtime layer (kernels/cuda/runtime.h): device
// memory is host memory, every operation is synchronous (a launch returns when its grid has
// finished), and GEMMs, which the real backend hands to cuBLASLt, run on the CPU backend.
// Allocations are exact-size heap blocks so that ASan reports out-of-bounds accesses of
// simulated kernels to global memory, and are poisoned (0xff bytes) as initcheck would flag.
#include <cstring>
#include <new>

#include <petal/error.h>

#include "kernels/backend.h"
#include "kernels/cuda/runtime.h"

namespace petal::kernels::sim_impl {

namespace {
constexpr std::align_val_t kAlignment{256};  // cudaMalloc's guarantee
}

void* rt_malloc(size_t nbytes) {
  void* p = nullptr;
  try {
    p = ::operator new(nbytes == 0 ? 1 : nbytes, kAlignment);
  } catch (const std::bad_alloc&) {
    PETAL_FAIL("sim: out of memory allocating ", nbytes, " bytes of device memory");
  }
  // cudaMalloc does not clear memory: poison it (0xff bytes, NaN for floats) so that a kernel
  // reading what nothing wrote fails its test instead of reading zeros.
  std::memset(p, 0xff, nbytes);
  return p;
}

void rt_free(void* p) {
  if (p != nullptr) ::operator delete(p, kAlignment);
}

void rt_memcpy_h2d(void* dst, const void* src, size_t n) {
  if (n != 0) std::memcpy(dst, src, n);
}

void rt_memcpy_d2h(void* dst, const void* src, size_t n) {
  if (n != 0) std::memcpy(dst, src, n);
}

void rt_memcpy_d2d(void* dst, const void* src, size_t n) {
  if (n != 0 && dst != src) std::memmove(dst, src, n);
}

void rt_memset(void* dst, int value, size_t n) {
  if (n != 0) std::memset(dst, value, n);
}

void rt_synchronize() {}  // launches and copies are synchronous

void rt_gemm(const GemmArgs& args) {
  Backend* cpu = cpu_backend();
  PETAL_CHECK(cpu != nullptr, "sim: gemm needs the CPU backend, which is unavailable");
  cpu->gemm(args);
}

// No cuBLASLt here: fused linears run the plain GEMM and the kernels of linear.cu.
bool rt_gemm_epilogue(const GemmArgs&, GemmEpilogue, void*, void*, int64_t) { return false; }

}  // namespace petal::kernels::sim_impl
