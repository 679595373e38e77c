// Planted out-of-bounds accesses for the ASan build (ctest entries sim:asan_catches_oob_*):
// `petal_sim_oob static_shared|dynamic_shared|global` runs a kernel that writes one element
// past a __shared__ array, past the launch's dynamic shared memory, or past a device
// allocation; AddressSanitizer must report it. `none` runs the same kernels in bounds.
// (UBSan, also on in sanitizer builds, reports constant-size arrays indexed out of range.)
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernels/sim/sim_cuda.h"

#include "kernels/cuda/runtime.h"

namespace {

constexpr int kThreads = 32;

// Thread 0 also writes slot `extra` (kThreads: one past the end, or 0 for the control run).
__global__ void static_shared_write(float* out, int extra) {
  __shared__ float buf[kThreads];
  buf[threadIdx.x] = static_cast<float>(threadIdx.x);
  // Through a pointer, as most kernels index shared memory (UBSan's bounds check would
  // otherwise see buf[32] first): this is ASan's catch.
  float* p = buf;
  if (threadIdx.x == 0) p[extra] = -1.0f;
  __syncthreads();
  out[threadIdx.x] = buf[(threadIdx.x + 1) % kThreads];
}

__global__ void dynamic_shared_write(float* out, int extra) {
  PETAL_DYNAMIC_SHARED(float, buf);
  buf[threadIdx.x] = static_cast<float>(threadIdx.x);
  if (threadIdx.x == 0) buf[extra] = -1.0f;
  __syncthreads();
  out[threadIdx.x] = buf[(threadIdx.x + 1) % kThreads];
}

__global__ void global_write(float* out, int extra) {
  out[threadIdx.x] = static_cast<float>(threadIdx.x);
  if (threadIdx.x == 0) out[extra] = -1.0f;
}

}  // namespace

int main(int argc, char** argv) {
  const char* kind = argc > 1 ? argv[1] : "none";
  const bool plant = std::strcmp(kind, "none") != 0;
  const int extra = plant ? kThreads : 0;
  namespace rt = petal::kernels::sim_impl;
  auto* out = static_cast<float*>(rt::rt_malloc(kThreads * sizeof(float)));
  using petal::sim::launch;
  if (!plant || std::strcmp(kind, "static_shared") == 0)
    launch("static_shared_write", static_shared_write, dim3(2), dim3(kThreads), 0, out, extra);
  if (!plant || std::strcmp(kind, "dynamic_shared") == 0)
    launch("dynamic_shared_write", dynamic_shared_write, dim3(2), dim3(kThreads), kThreads * sizeof(float), out,
           extra);
  if (!plant || std::strcmp(kind, "global") == 0)
    launch("global_write", global_write, dim3(1), dim3(kThreads), 0, out, extra);
  std::vector<float> host(kThreads);
  rt::rt_memcpy_d2h(host.data(), out, kThreads * sizeof(float));
  rt::rt_free(out);
  std::printf("petal_sim_oob %s: no error detected (out[1] = %g)\n", kind, static_cast<double>(host[1]));
  return plant ? 1 : 0;
}
