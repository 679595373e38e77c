// CPU LayerNorm over the rows of a contiguous [rows, cols] matrix, forward and backward.
// Forward, per row: mean and the variance of the centered values (two passes over the
// row, sums accumulated in 8 double lanes), then y = (x - mean) * rstd * weight + bias in one
// more pass; mean and rstd are saved (f64 for f64 inputs, else f32). 16-bit rows are
// widened into a per-thread float buffer first. OpenMP splits the rows.
// Backward, with xhat = (x - mean) * rstd and g = dy * weight:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dweight = sum_rows dy * xhat, dbias = sum_rows dy
// dweight/dbias: each row chunk accumulates its own [cols] double partial sums, and the
// partials are added in chunk order afterwards (deterministic for a given thread count).
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)); }

// Statistics type: double for f64 inputs, float otherwise.
template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// sum_i f(i) in 8 double lanes: vectorizable without reassociating one accumulator.
template <typename F>
double lane_sum(int64_t n, F&& f) {
  double lane[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += f(i + j);
  for (; i < n; ++i) lane[0] += f(i);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// Row in the compute type C: x widened (or the input itself for f32/f64).
template <typename T, typename C>
const C* widen_row(const T* x, int64_t n, std::vector<C>& buf) {
  if constexpr (std::is_same_v<T, C>) {
    (void)n;
    (void)buf;
    return x;
  } else {
    for (int64_t i = 0; i < n; ++i) buf[i] = load(x[i]);
    return buf.data();
  }
}

template <typename T>
void layer_norm_forward_typed(T* y, stat_t<T>* mean_out, stat_t<T>* rstd_out, const T* x, const T* weight,
                              const T* bias, int64_t rows, int64_t cols, double eps) {
  using C = typename Acc<T>::type;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    std::vector<C> xbuf(static_cast<size_t>(cols));
    std::vector<C> wbuf(weight ? static_cast<size_t>(cols) : 0), bbuf(bias ? static_cast<size_t>(cols) : 0);
    const C* w = weight ? widen_row<T, C>(weight, cols, wbuf) : nullptr;
    const C* b = bias ? widen_row<T, C>(bias, cols, bbuf) : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
      const C* xr = widen_row<T, C>(x + r * cols, cols, xbuf);
      const double mu = lane_sum(cols, [&](int64_t i) { return static_cast<double>(xr[i]); }) / cols;
      const double v = lane_sum(cols, [&](int64_t i) {
        const double d = static_cast<double>(xr[i]) - mu;
        return d * d;
      });
      const double rs = 1.0 / std::sqrt(v / static_cast<double>(cols) + eps);
      mean_out[r] = static_cast<stat_t<T>>(mu);
      rstd_out[r] = static_cast<stat_t<T>>(rs);
      const C m = static_cast<C>(mu), k = static_cast<C>(rs);
      T* yr = y + r * cols;
      for (int64_t i = 0; i < cols; ++i) {
        C o = (xr[i] - m) * k;
        if (w) o *= w[i];
        if (b) o += b[i];
        yr[i] = store<T>(o);
      }
    }
  });
}

template <typename T>
void layer_norm_backward_typed(T* dx, T* dweight, T* dbias, const T* dy, const T* x, const stat_t<T>* mean,
                               const stat_t<T>* rstd, const T* weight, int64_t rows, int64_t cols) {
  using C = typename Acc<T>::type;
  const bool param_grads = dweight != nullptr || dbias != nullptr;
  // Fixed row chunks (at most one per thread) so partial sums have a fixed owner.
  const int64_t grain = row_grain(cols);
  const int64_t chunks =
      std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), rows / std::max<int64_t>(grain, 1)));
  const int64_t chunk_rows = (rows + chunks - 1) / chunks;
  std::vector<double> partial_w(param_grads ? static_cast<size_t>(chunks * cols) : 0, 0.0);
  std::vector<double> partial_b(param_grads ? static_cast<size_t>(chunks * cols) : 0, 0.0);
  auto run_chunk = [&](int64_t c) {
    const int64_t r0 = c * chunk_rows, r1 = std::min(rows, r0 + chunk_rows);
    std::vector<C> xbuf(static_cast<size_t>(cols)), dybuf(static_cast<size_t>(cols)), wbuf;
    std::vector<C> xhat(static_cast<size_t>(cols)), g(static_cast<size_t>(cols));
    if (weight) wbuf.resize(static_cast<size_t>(cols));
    const C* w = weight ? widen_row<T, C>(weight, cols, wbuf) : nullptr;
    double* pw = param_grads ? partial_w.data() + c * cols : nullptr;
    double* pb = param_grads ? partial_b.data() + c * cols : nullptr;
    for (int64_t r = r0; r < r1; ++r) {
      const C* xr = widen_row<T, C>(x + r * cols, cols, xbuf);
      const C* dyr = widen_row<T, C>(dy + r * cols, cols, dybuf);
      const C m = static_cast<C>(mean[r]), k = static_cast<C>(rstd[r]);
      for (int64_t i = 0; i < cols; ++i) xhat[i] = (xr[i] - m) * k;
      if (w) {
        for (int64_t i = 0; i < cols; ++i) g[i] = dyr[i] * w[i];
      } else {
        for (int64_t i = 0; i < cols; ++i) g[i] = dyr[i];
      }
      const double sg = lane_sum(cols, [&](int64_t i) { return static_cast<double>(g[i]); });
      const double sgx =
          lane_sum(cols, [&](int64_t i) { return static_cast<double>(g[i]) * static_cast<double>(xhat[i]); });
      const C mg = static_cast<C>(sg / static_cast<double>(cols));
      const C mgx = static_cast<C>(sgx / static_cast<double>(cols));
      T* dxr = dx + r * cols;
      for (int64_t i = 0; i < cols; ++i) dxr[i] = store<T>(k * (g[i] - mg - xhat[i] * mgx));
      if (param_grads)
        for (int64_t i = 0; i < cols; ++i) {
          pw[i] += static_cast<double>(dyr[i]) * static_cast<double>(xhat[i]);
          pb[i] += static_cast<double>(dyr[i]);
        }
    }
  };
  if (chunks > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static, 1)
    for (int64_t c = 0; c < chunks; ++c) run_chunk(c);
  } else {
    for (int64_t c = 0; c < chunks; ++c) run_chunk(c);
  }
  if (!param_grads) return;
  for (int64_t i = 0; i < cols; ++i) {
    double sw = 0, sb = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      sw += partial_w[c * cols + i];
      sb += partial_b[c * cols + i];
    }
    if (dweight) dweight[i] = store<T>(sw);
    if (dbias) dbias[i] = store<T>(sb);
  }
}

}  // namespace

void CpuBackend::layer_norm_forward(void* y, void* mean, void* rstd, const void* x, const void* weight,
                                    const void* bias, DType dtype, int64_t rows, int64_t cols, double eps) {
  if (rows == 0 || cols == 0) return;
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_forward_typed<T>(static_cast<T*>(y), static_cast<stat_t<T>*>(mean), static_cast<stat_t<T>*>(rstd),
                                static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias),
                                rows, cols, eps);
  });
}

void CpuBackend::layer_norm_backward(void* dx, void* dweight, void* dbias, const void* dy, const void* x,
                                     const void* mean, const void* rstd, const void* weight, DType dtype,
                                     int64_t rows, int64_t cols) {
  if (cols == 0) return;
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_backward_typed<T>(static_cast<T*>(dx), static_cast<T*>(dweight), static_cast<T*>(dbias),
                                 static_cast<const T*>(dy), static_cast<const T*>(x),
                                 static_cast<const stat_t<T>*>(mean), static_cast<const stat_t<T>*>(rstd),
                                 static_cast<const T*>(weight), rows, cols);
  });
}

}  // namespace petal::kernels
