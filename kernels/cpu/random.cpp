// Counter-based random fills (Philox4x32-10, kernels/philox.h). Element i depends only
// on (seed, offset, i), so the split over OpenMP threads does not change the numbers
// and the CUDA backend reproduces them.
#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"
#include "kernels/philox.h"

namespace petal::kernels {

using namespace cpu;

void CpuBackend::random(const View& dst, RandomKind kind, uint64_t seed, uint64_t offset, double a, double b) {
  const int64_t n = dst.numel();
  dispatch_all(dst.dtype, [&](auto dt) {
    using D = typename decltype(dt)::type;
    D* d = static_cast<D*>(dst.data);
    parallel_for(n, 16384, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        uint64_t u = static_cast<uint64_t>(i);
        double v = 0.0;
        switch (kind) {
          case RandomKind::Uniform:
            v = a + (b - a) * static_cast<double>(philox_uniform(philox_word(seed, offset, u)));
            break;
          case RandomKind::Normal:
            v = a + b * philox_normal(seed, offset, u);
            break;
          case RandomKind::Int: {
            uint64_t range = static_cast<uint64_t>(b - a);
            v = a + static_cast<double>(static_cast<uint64_t>(philox_word(seed, offset, u)) % range);
            break;
          }
        }
        d[i] = store<D>(v);
      }
    });
  });
}

}  // namespace petal::kernels
