// Measures what a simulated launch costs (prints numbers, asserts nothing; quoted in
// docs/simulator.md): an empty kernel, a kernel with barriers, and a warp-shuffle reduction,
// for a few block sizes, on 1 host thread and on the default number; CPU time, not wall time.
#include <ctime>
#include <cstdio>
#include <vector>

#include "kernels/sim/sim_cuda.h"

namespace {

__global__ void empty_kernel(float* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0 && out == nullptr) out[0] = 0.0f;
}

__global__ void barriers_kernel(float* out, int rounds) {
  __shared__ float buf[1024];
  float v = static_cast<float>(threadIdx.x);
  for (int r = 0; r < rounds; ++r) {
    buf[threadIdx.x] = v;
    __syncthreads();
    v += buf[(threadIdx.x + 1) % blockDim.x];
    __syncthreads();
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

__global__ void shuffle_kernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// CPU time of the whole process (all host threads): on a loaded machine it is a steadier
// measure of the simulator's own cost than wall time.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

template <typename F>
double seconds(F&& f) {
  const double t0 = cpu_seconds();
  f();
  return cpu_seconds() - t0;
}

}  // namespace

int main() {
  using petal::sim::launch;
  const unsigned blocks = 256;
  std::vector<float> out(blocks * 1024);
  const int default_threads = petal::sim::host_threads();
  for (int threads : {1, default_threads}) {
    petal::sim::set_host_threads(threads);
    std::printf("host threads: %d, fiber stack %zu KiB\n", threads, petal::sim::fiber_stack_bytes() / 1024);
    for (unsigned bs : {32u, 256u, 1024u}) {
      launch("empty", empty_kernel, dim3(blocks), dim3(bs), 0, out.data());  // warm the stack caches
      const double t_empty = seconds([&] { launch("empty", empty_kernel, dim3(blocks), dim3(bs), 0, out.data()); });
      const auto s0 = petal::sim::stats();
      const double t_bar = seconds([&] { launch("barriers", barriers_kernel, dim3(blocks), dim3(bs), 0, out.data(), 10); });
      const auto s1 = petal::sim::stats();
      const double t_shfl = seconds([&] { launch("shuffle", shuffle_kernel, dim3(blocks), dim3(bs), 0, out.data()); });
      const double n = static_cast<double>(blocks) * bs;
      std::printf(
          "  %4u threads/block x %u blocks: empty %.3f ms (%.0f ns/thread) | 20 barriers %.3f ms (%.0f ns/switch) | "
          "5 shuffles %.3f ms (%.0f ns/thread)\n",
          bs, blocks, t_empty * 1e3, t_empty / n * 1e9, t_bar * 1e3,
          t_bar / static_cast<double>(s1.switches - s0.switches) * 1e9, t_shfl * 1e3, t_shfl / n * 1e9);
    }
  }
  return 0;
}
