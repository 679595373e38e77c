// Counter-based random fills (Philox4x32-10, kernels/philox.h). Element i is a pure
// function of (seed, offset, i), computed in double exactly as the CPU backend does, so
// every backend draws the same stream of numbers: bit-identical on the simulator (same
// host math library), within the device math library's last-ulp differences on a GPU.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/philox.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

template <typename T>
static __global__ void random_kernel(int64_t n, T* dst, RandomKind kind, uint64_t seed, uint64_t offset, double a,
                                     double b) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t u = static_cast<uint64_t>(i);
    double v;
    if (kind == RandomKind::Uniform) {
      v = a + (b - a) * static_cast<double>(philox_uniform(philox_word(seed, offset, u)));
    } else if (kind == RandomKind::Normal) {
      v = a + b * philox_normal(seed, offset, u);
    } else {
      const uint64_t range = static_cast<uint64_t>(b - a);
      v = a + static_cast<double>(static_cast<uint64_t>(philox_word(seed, offset, u)) % range);
    }
    dst[i] = from_acc<T>(v);
  }
}

template <typename T>
static void launch_random(const View& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b,
                          Stream stream) {
  const int64_t n = dst.numel();
  PETAL_LAUNCH(random_kernel<T>, grid_for(n), kBlockSize, 0, stream, n, static_cast<T*>(dst.data), kind, seed, offset,
               a, b);
}

}  // namespace

void CudaBackend::random(const View& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) {
  if (dst.numel() == 0) return;
  Stream stream = activate();
  dispatch_all(dst.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_random<T>(dst, kind, seed, offset, a, b, stream);
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
