// CPU LayerNorm over the rows of a contiguous [rows, cols] matrix, forward and backward.
// Element types (kernels/backend.h, LayerNormDTypes): x/dx in X, y/dy in Y, weight/bias and
// dweight/dbias in W; either all equal, or autocast's mixed form (W = f32, Y 16-bit, X = f32
// or Y), so LayerNorm reads the f32 residual stream and writes the bf16 input of the next
// Linear without a cast on either side. Math in C = double for f64, float otherwise.
// Forward, per row: x widened into a C buffer while its sum is taken (8 double lanes), the
// variance of the centered values (two-pass, 8 double lanes), then y = xhat * w + b; mean and
// rstd saved (f64 for f64 inputs, else f32). OpenMP splits the rows.
// Backward, with xhat = (x - mean) * rstd and g = dy * weight:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//   dweight = sum_rows dy * xhat, dbias = sum_rows dy
// dweight/dbias: each row chunk accumulates its own [cols] double partial sums, and the
// partials are added in chunk order afterwards (deterministic for a given thread count).
// The row loops are written once (PETAL_CPU_INLINE) and instantiated twice per type combination
// (kernels/cpu/isa.h): baseline and AVX-512, picked per call.
#include <cmath>
#include <type_traits>
#include <vector>

#include <petal/error.h>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)); }

// Statistics type: double for f64 inputs, float otherwise.
template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
template <typename T>
using comp_t = typename Acc<T>::type;

template <typename T>
PETAL_CPU_INLINE comp_t<T> ld(T v) {
  if constexpr (std::is_same_v<T, bf16_t>) {
    // bf16 -> f32 is a 16-bit shift (inline, so it vectorizes in both variants).
    uint32_t u = static_cast<uint32_t>(v.bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  } else {
    return load(v);
  }
}

template <typename T, typename V>
PETAL_CPU_INLINE T st(V v) {
  if constexpr (std::is_same_v<T, bf16_t>) {
    // Round to nearest even; NaN stays a (quiet) NaN. The same bits as float_to_bf16_bits.
    const float f = static_cast<float>(v);
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    return bf16_t{static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded)};
  } else {
    return store<T>(v);
  }
}

// Sum of the 8 lanes in a fixed order.
PETAL_CPU_INLINE double lanes_total(const double (&lane)[8]) {
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// Widens the parameters once per row chunk (ones / zeros when absent: the same arithmetic).
template <typename W, typename C>
PETAL_CPU_INLINE void widen_params(C* out, const W* p, C absent, int64_t n) {
  if (p != nullptr) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<C>(ld(p[i]));
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = absent;
  }
}

// Rows [r0, r1) of the forward. buf: 3 * cols scratch elements of C.
template <typename X, typename Y, typename W>
PETAL_CPU_INLINE void ln_forward_rows(Y* y, stat_t<X>* mean_out, stat_t<X>* rstd_out, const X* x, const W* weight,
                                      const W* bias, int64_t r0, int64_t r1, int64_t cols, double eps,
                                      comp_t<X>* buf) {
  using C = comp_t<X>;
  C* xr = buf;
  C* w = buf + cols;
  C* b = buf + 2 * cols;
  widen_params(w, weight, C(1), cols);
  widen_params(b, bias, C(0), cols);
  const int64_t n8 = cols / 8 * 8;
  for (int64_t r = r0; r < r1; ++r) {
    const X* xin = x + r * cols;
    double lane[8] = {};
    for (int64_t i = 0; i < n8; i += 8)
      for (int j = 0; j < 8; ++j) {
        const C v = ld(xin[i + j]);
        xr[i + j] = v;
        lane[j] += static_cast<double>(v);
      }
    for (int64_t i = n8; i < cols; ++i) {
      const C v = ld(xin[i]);
      xr[i] = v;
      lane[0] += static_cast<double>(v);
    }
    const double mu = lanes_total(lane) / static_cast<double>(cols);
    double q[8] = {};
    for (int64_t i = 0; i < n8; i += 8)
      for (int j = 0; j < 8; ++j) {
        const double d = static_cast<double>(xr[i + j]) - mu;
        q[j] += d * d;
      }
    for (int64_t i = n8; i < cols; ++i) {
      const double d = static_cast<double>(xr[i]) - mu;
      q[0] += d * d;
    }
    const double rs = 1.0 / std::sqrt(lanes_total(q) / static_cast<double>(cols) + eps);
    mean_out[r] = static_cast<stat_t<X>>(mu);
    rstd_out[r] = static_cast<stat_t<X>>(rs);
    const C m = static_cast<C>(mu), k = static_cast<C>(rs);
    Y* yr = y + r * cols;
    for (int64_t i = 0; i < cols; ++i) yr[i] = st<Y>((xr[i] - m) * k * w[i] + b[i]);
  }
}

// Rows [r0, r1) of the backward; pw/pb (cols doubles each, or null) accumulate this chunk's
// dweight/dbias partial sums. buf: 4 * cols scratch elements of C.
template <typename X, typename Y, typename W>
PETAL_CPU_INLINE void ln_backward_rows(X* dx, double* pw, double* pb, const Y* dy, const X* x,
                                       const stat_t<X>* mean, const stat_t<X>* rstd, const W* weight, int64_t r0,
                                       int64_t r1, int64_t cols, comp_t<X>* buf) {
  using C = comp_t<X>;
  C* w = buf;
  C* xhat = buf + cols;
  C* g = buf + 2 * cols;
  C* d = buf + 3 * cols;
  widen_params(w, weight, C(1), cols);
  const int64_t n8 = cols / 8 * 8;
  const double inv_cols = 1.0 / static_cast<double>(cols);
  for (int64_t r = r0; r < r1; ++r) {
    const X* xr = x + r * cols;
    const Y* dyr = dy + r * cols;
    const C m = static_cast<C>(mean[r]), k = static_cast<C>(rstd[r]);
    double sg[8] = {}, sgx[8] = {};
    for (int64_t i = 0; i < n8; i += 8)
      for (int j = 0; j < 8; ++j) {
        const C xh = (ld(xr[i + j]) - m) * k;
        const C dv = ld(dyr[i + j]);
        const C gv = dv * w[i + j];
        xhat[i + j] = xh;
        d[i + j] = dv;
        g[i + j] = gv;
        sg[j] += static_cast<double>(gv);
        sgx[j] += static_cast<double>(gv) * static_cast<double>(xh);
      }
    for (int64_t i = n8; i < cols; ++i) {
      const C xh = (ld(xr[i]) - m) * k;
      const C dv = ld(dyr[i]);
      const C gv = dv * w[i];
      xhat[i] = xh;
      d[i] = dv;
      g[i] = gv;
      sg[0] += static_cast<double>(gv);
      sgx[0] += static_cast<double>(gv) * static_cast<double>(xh);
    }
    const C mg = static_cast<C>(lanes_total(sg) * inv_cols);
    const C mgx = static_cast<C>(lanes_total(sgx) * inv_cols);
    X* dxr = dx + r * cols;
    for (int64_t i = 0; i < cols; ++i) dxr[i] = st<X>(k * (g[i] - mg - xhat[i] * mgx));
    if (pw != nullptr)
      for (int64_t i = 0; i < cols; ++i) {
        pw[i] += static_cast<double>(d[i]) * static_cast<double>(xhat[i]);
        pb[i] += static_cast<double>(d[i]);
      }
  }
}

// The two variants of each row loop, per supported type combination.
template <typename X, typename Y, typename W>
struct LnRows;

#define PETAL_LN_ROWS(X, Y, W)                                                                                     \
  template <>                                                                                                      \
  struct LnRows<X, Y, W> {                                                                                         \
    static void forward_baseline(Y* y, stat_t<X>* mu, stat_t<X>* rs, const X* x, const W* w, const W* b,           \
                                 int64_t r0, int64_t r1, int64_t cols, double eps, comp_t<X>* buf) {               \
      ln_forward_rows<X, Y, W>(y, mu, rs, x, w, b, r0, r1, cols, eps, buf);                                        \
    }                                                                                                              \
    PETAL_CPU_AVX512 static void forward_avx512(Y* y, stat_t<X>* mu, stat_t<X>* rs, const X* x, const W* w,       \
                                                const W* b, int64_t r0, int64_t r1, int64_t cols, double eps,      \
                                                comp_t<X>* buf) {                                                  \
      ln_forward_rows<X, Y, W>(y, mu, rs, x, w, b, r0, r1, cols, eps, buf);                                        \
    }                                                                                                              \
    static void backward_baseline(X* dx, double* pw, double* pb, const Y* dy, const X* x, const stat_t<X>* mu,     \
                                  const stat_t<X>* rs, const W* w, int64_t r0, int64_t r1, int64_t cols,           \
                                  comp_t<X>* buf) {                                                                \
      ln_backward_rows<X, Y, W>(dx, pw, pb, dy, x, mu, rs, w, r0, r1, cols, buf);                                  \
    }                                                                                                              \
    PETAL_CPU_AVX512 static void backward_avx512(X* dx, double* pw, double* pb, const Y* dy, const X* x,          \
                                                 const stat_t<X>* mu, const stat_t<X>* rs, const W* w, int64_t r0, \
                                                 int64_t r1, int64_t cols, comp_t<X>* buf) {                       \
      ln_backward_rows<X, Y, W>(dx, pw, pb, dy, x, mu, rs, w, r0, r1, cols, buf);                                  \
    }                                                                                                              \
  };

PETAL_LN_ROWS(float, float, float)
PETAL_LN_ROWS(double, double, double)
PETAL_LN_ROWS(bf16_t, bf16_t, bf16_t)
PETAL_LN_ROWS(f16_t, f16_t, f16_t)
PETAL_LN_ROWS(float, bf16_t, float)
PETAL_LN_ROWS(bf16_t, bf16_t, float)
PETAL_LN_ROWS(float, f16_t, float)
PETAL_LN_ROWS(f16_t, f16_t, float)
#undef PETAL_LN_ROWS

template <typename X, typename Y, typename W>
constexpr bool kSupported = (std::is_same_v<X, Y> && std::is_same_v<Y, W>) ||
                            (std::is_same_v<W, float> && (std::is_same_v<Y, bf16_t> || std::is_same_v<Y, f16_t>) &&
                             (std::is_same_v<X, float> || std::is_same_v<X, Y>));

// f(TypeTag<X>, TypeTag<Y>, TypeTag<W>) for a supported combination.
template <typename F>
void dispatch_layer_norm(const LayerNormDTypes& t, F&& f) {
  bool done = false;
  dispatch_floating(t.x, [&](auto xt) {
    dispatch_floating(t.y, [&](auto yt) {
      dispatch_floating(t.param, [&](auto wt) {
        using X = typename decltype(xt)::type;
        using Y = typename decltype(yt)::type;
        using W = typename decltype(wt)::type;
        if constexpr (kSupported<X, Y, W>) {
          f(xt, yt, wt);
          done = true;
        }
      });
    });
  });
  PETAL_CHECK(done, "cpu layer_norm: unsupported dtypes x ", dtype_name(t.x), ", y ", dtype_name(t.y), ", params ",
              dtype_name(t.param));
}

}  // namespace

void CpuBackend::layer_norm_forward(void* y, void* mean, void* rstd, const void* x, const void* weight,
                                    const void* bias, LayerNormDTypes dtypes, int64_t rows, int64_t cols,
                                    double eps) {
  if (rows == 0 || cols == 0) return;
  dispatch_layer_norm(dtypes, [&](auto xt, auto yt, auto wt) {
    using X = typename decltype(xt)::type;
    using Y = typename decltype(yt)::type;
    using W = typename decltype(wt)::type;
    using C = comp_t<X>;
    const bool avx512 = avx512_enabled();
    parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
      std::vector<C> buf(static_cast<size_t>(3 * cols));
      auto fn = avx512 ? &LnRows<X, Y, W>::forward_avx512 : &LnRows<X, Y, W>::forward_baseline;
      fn(static_cast<Y*>(y), static_cast<stat_t<X>*>(mean), static_cast<stat_t<X>*>(rstd), static_cast<const X*>(x),
         static_cast<const W*>(weight), static_cast<const W*>(bias), r0, r1, cols, eps, buf.data());
    });
  });
}

void CpuBackend::layer_norm_backward(void* dx, void* dweight, void* dbias, const void* dy, const void* x,
                                     const void* mean, const void* rstd, const void* weight, LayerNormDTypes dtypes,
                                     int64_t rows, int64_t cols) {
  if (cols == 0) return;
  dispatch_layer_norm(dtypes, [&](auto xt, auto yt, auto wt) {
    using X = typename decltype(xt)::type;
    using Y = typename decltype(yt)::type;
    using W = typename decltype(wt)::type;
    using C = comp_t<X>;
    const bool avx512 = avx512_enabled();
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
      std::vector<C> buf(static_cast<size_t>(4 * cols));
      auto fn = avx512 ? &LnRows<X, Y, W>::backward_avx512 : &LnRows<X, Y, W>::backward_baseline;
      fn(static_cast<X*>(dx), param_grads ? partial_w.data() + c * cols : nullptr,
         param_grads ? partial_b.data() + c * cols : nullptr, static_cast<const Y*>(dy), static_cast<const X*>(x),
         static_cast<const stat_t<X>*>(mean), static_cast<const stat_t<X>*>(rstd), static_cast<const W*>(weight), r0,
         std::max(r0, r1), cols, buf.data());
    };
    if (chunks > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static, 1)
      for (int64_t c = 0; c < chunks; ++c) run_chunk(c);
    } else {
      for (int64_t c = 0; c < chunks; ++c) run_chunk(c);
    }
    if (!param_grads) return;
    W* dw = static_cast<W*>(dweight);
    W* db = static_cast<W*>(dbias);
    for (int64_t i = 0; i < cols; ++i) {
      double sw = 0, sb = 0;
      for (int64_t c = 0; c < chunks; ++c) {
        sw += partial_w[c * cols + i];
        sb += partial_b[c * cols + i];
      }
      if (dw) dw[i] = store<W>(sw);
      if (db) db[i] = store<W>(sb);
    }
  });
}

}  // namespace petal::kernels
