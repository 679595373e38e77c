// CPU fused Linear (+ GELU): one backend GEMM (OpenBLAS / the CPU GEMM) and one OpenMP pass
// that adds the bias and applies the activation, keeping the pre-activation in aux for the
// backward. Backward: dpre = dy * gelu'(aux) in one pass, the bias gradient as column sums
// in double over blocks of columns (each column summed over the rows in order:
// deterministic), then the dX and dW GEMMs. Math in float for f32/bf16/f16, double for f64,
// with the elementwise kernels' GELU formulas.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kGeluCoef = 0.044715;

template <typename A>
A gelu(LinearActivation act, A x) {
  if (act == LinearActivation::GeluErf) return A(0.5) * x * (A(1) + std::erf(x * A(kSqrt1_2)));
  return A(0.5) * x * (A(1) + std::tanh(A(kSqrt2OverPi) * (x + A(kGeluCoef) * x * x * x)));
}

template <typename A>
A gelu_grad(LinearActivation act, A x) {
  if (act == LinearActivation::GeluErf) {
    const A cdf = A(0.5) * (A(1) + std::erf(x * A(kSqrt1_2)));
    const A pdf = A(kInvSqrt2Pi) * std::exp(A(-0.5) * x * x);
    return cdf + x * pdf;
  }
  const A x2 = x * x;
  const A t = std::tanh(A(kSqrt2OverPi) * (x + A(kGeluCoef) * x2 * x));
  const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCoef) * x2);
  return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du;
}

GemmArgs gemm_args(DType dtype, int64_t m, int64_t n, int64_t k, const void* a, bool trans_a, const void* b,
                   bool trans_b, void* c) {
  GemmArgs g;
  g.dtype = dtype;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.trans_a = trans_a;
  g.lda = std::max<int64_t>(1, trans_a ? m : k);
  g.b = b;
  g.trans_b = trans_b;
  g.ldb = std::max<int64_t>(1, trans_b ? k : n);
  g.c = c;
  g.ldc = std::max<int64_t>(1, n);
  return g;
}

// C = op(A) op(B), or zeros when the reduced extent is empty.
void gemm_or_zero(Backend& be, const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {
    std::memset(g.c, 0, static_cast<size_t>(g.m * g.n) * dtype_size(g.dtype));  // +0.0 in every float dtype
    return;
  }
  be.gemm(g);
}

}  // namespace

void CpuBackend::linear_forward(const LinearArgs& a) {
  if (a.m == 0 || a.n == 0) return;
  const bool act = a.act != LinearActivation::None;
  void* out = act ? a.aux : a.y;
  gemm_or_zero(*this, gemm_args(a.dtype, a.m, a.n, a.k, a.x, false, a.w, true, out));
  if (!act && a.bias == nullptr) return;
  dispatch_floating(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename Acc<T>::type;
    T* pre = static_cast<T*>(out);
    T* y = static_cast<T*>(a.y);
    const T* bias = static_cast<const T*>(a.bias);
    const int64_t n = a.n;
    parallel_for(a.m, std::max<int64_t>(1, kParallelGrain / n), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t j = 0; j < n; ++j) {
          const int64_t i = r * n + j;
          A v = static_cast<A>(load(pre[i]));
          if (bias != nullptr) v += static_cast<A>(load(bias[j]));
          if (act) {
            pre[i] = store<T>(v);
            y[i] = store<T>(gelu(a.act, v));
          } else {
            y[i] = store<T>(v);
          }
        }
      }
    });
  });
}

void CpuBackend::linear_backward(const LinearArgs& a, const void* dy, void* dx, void* dw, void* dbias) {
  const size_t es = dtype_size(a.dtype);
  const bool act = a.act != LinearActivation::None;
  std::vector<unsigned char> dpre_buffer;
  const void* dpre = dy;
  if (act && a.m * a.n > 0) {
    dpre_buffer.resize(static_cast<size_t>(a.m * a.n) * es);
    dispatch_floating(a.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      using A = typename Acc<T>::type;
      const T* g = static_cast<const T*>(dy);
      const T* pre = static_cast<const T*>(a.aux);
      T* d = reinterpret_cast<T*>(dpre_buffer.data());
      parallel_for(a.m * a.n, kParallelGrain, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i)
          d[i] = store<T>(static_cast<A>(load(g[i])) * gelu_grad(a.act, static_cast<A>(load(pre[i]))));
      });
    });
    dpre = dpre_buffer.data();
  }
  if (dbias != nullptr && a.n > 0) {
    dispatch_floating(a.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* d = static_cast<const T*>(dpre);
      T* out = static_cast<T*>(dbias);
      constexpr int64_t kCols = 64;
      const int64_t blocks = (a.n + kCols - 1) / kCols;
      parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
        double acc[kCols];
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t c0 = b * kCols, c1 = std::min(a.n, c0 + kCols);
          for (int64_t j = c0; j < c1; ++j) acc[j - c0] = 0.0;
          for (int64_t r = 0; r < a.m; ++r) {
            const T* row = d + r * a.n;
            for (int64_t j = c0; j < c1; ++j) acc[j - c0] += static_cast<double>(load(row[j]));
          }
          for (int64_t j = c0; j < c1; ++j) out[j] = store<T>(acc[j - c0]);
        }
      });
    });
  }
  if (dx != nullptr) gemm_or_zero(*this, gemm_args(a.dtype, a.m, a.k, a.n, dpre, false, a.w, false, dx));
  if (dw != nullptr) gemm_or_zero(*this, gemm_args(a.dtype, a.n, a.k, a.m, dpre, true, a.x, false, dw));
}

}  // namespace petal::kernels
