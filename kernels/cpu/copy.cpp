// Strided copy with dtype conversion, and fill. The contiguous same-dtype case is a
// memcpy; everything else runs through the N-ary strided row loop.
#include <cstring>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

void CpuBackend::copy(const View& dst, const View& src) {
  if (dst.dtype == src.dtype && dst.is_contiguous() && src.is_contiguous() && src.numel() == dst.numel()) {
    bool src_broadcast = false;
    for (int i = 0; i < src.ndim; ++i)
      if (src.strides[i] == 0 && src.shape[i] > 1) src_broadcast = true;
    if (!src_broadcast) {
      std::memcpy(dst.data, src.data, static_cast<size_t>(dst.numel()) * dtype_size(dst.dtype));
      return;
    }
  }
  const View* views[2] = {&dst, &src};
  dispatch_all(dst.dtype, [&](auto dt) {
    using D = typename decltype(dt)::type;
    dispatch_all(src.dtype, [&](auto st) {
      using S = typename decltype(st)::type;
      D* d = static_cast<D*>(dst.data);
      const S* s = static_cast<const S*>(src.data);
      for_each_row<2>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
        D* dp = d + off[0];
        const S* sp = s + off[1];
        if (inc[0] == 1 && inc[1] == 1) {
          for (int64_t i = 0; i < n; ++i) dp[i] = store<D>(load(sp[i]));
        } else {
          for (int64_t i = 0; i < n; ++i) dp[i * inc[0]] = store<D>(load(sp[i * inc[1]]));
        }
      });
    });
  });
}

void CpuBackend::fill(const View& dst, double value) {
  const View* views[1] = {&dst};
  dispatch_all(dst.dtype, [&](auto dt) {
    using D = typename decltype(dt)::type;
    D v = store<D>(value);
    D* d = static_cast<D*>(dst.data);
    for_each_row<1>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
      D* dp = d + off[0];
      if (inc[0] == 1) {
        for (int64_t i = 0; i < n; ++i) dp[i] = v;
      } else {
        for (int64_t i = 0; i < n; ++i) dp[i * inc[0]] = v;
      }
    });
  });
}

}  // namespace petal::kernels
