// CPU softmax and log_softmax over the rows of a contiguous [rows, cols] matrix, and
// their backward passes. Forward is the stable three-pass form: row max, sum of
// exp(x - max) (accumulated in double), then scale (softmax) or shift by max + log(sum)
// (log_softmax). Math runs in float for f32/bf16/f16 (with a vectorizable exp) and double
// for f64; 16-bit rows are widened into a per-thread float buffer. OpenMP splits the rows.
// The float rows (forward and backward) come in two ISA variants (kernels/cpu/isa.h): the
// same always-inline body compiled for baseline x86-64 and for AVX-512, picked per call.
//   softmax backward:     dx = y * (dy - sum(dy * y))
//   log_softmax backward: dx = dy - exp(y) * sum(dy)
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/softmax.h"

namespace petal::kernels {

using namespace cpu;

namespace {

// Rows per parallel chunk so each thread gets at least kParallelGrain elements.
inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)); }

// exp for float rows, written so the compiler vectorizes it (std::exp is a library call
// per element): x = n ln2 + r with |r| <= ln2/2 (ln2 in two parts, n ln2_hi exact), exp(r) by
// its degree-7 Taylor polynomial, 2^n assembled in the exponent bits. Only selects on integer
// masks and no float-to-int conversion, since either keeps GCC from vectorizing under
// the default -ftrapping-math. Domain: x <= 88 (softmax feeds x - max <= 0); inputs
// below -88, -inf included, give exactly 0; NaN stays NaN; results below FLT_MIN flush to 0.
// Error: the Taylor remainder r^8/8! < 5e-9 (0.05 ulp), the rounding of 1 + (...) 0.5 ulp,
// the tail's and r's own roundings (r carries n ln2_lo's) and the exact 2^n scaling: measured
// 1.04 ulp at most over every 13th float of [-87.3, 88] in either ISA variant (gcc 12; the
// test asserts 2 ulp over its grid).
PETAL_CPU_INLINE float exp_vec(float x) {
  int32_t xi;
  std::memcpy(&xi, &x, sizeof(xi));
  constexpr int32_t kMinus88 = -1028653056;  // bit pattern of -88.0f
  constexpr int32_t kMinusInf = -8388608;    // bit pattern of -inf
  // Negative floats order reversely as int32: x < -88 <=> kMinus88 < xi <= kMinusInf (NaN excluded).
  const int32_t below = -static_cast<int32_t>((xi > kMinus88) & (xi <= kMinusInf));
  const int32_t ci = (xi & ~below) | (kMinus88 & below);
  float xc;
  std::memcpy(&xc, &ci, sizeof(xc));
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float v = xc * 1.44269504088896341f + kRound;
  const float n = v - kRound;
  uint32_t vb;
  std::memcpy(&vb, &v, sizeof(vb));
  const uint32_t biased = vb - 0x4B400000u + 127u;  // n + 127 from v's low mantissa bits
  const float r = (xc - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
  // exp(r) = 1 + (r + r^2 q(r)), q the Taylor tail 1/2 + r/6 + ... + r^5/5040: the leading
  // 1 + r is added last, so the rounding of the small tail barely shows.
  float q = 1.0f / 5040;
  q = q * r + 1.0f / 720;
  q = q * r + 1.0f / 120;
  q = q * r + 1.0f / 24;
  q = q * r + 1.0f / 6;
  q = q * r + 0.5f;
  const float p = 1.0f + (r + (r * r) * q);
  const uint32_t bits = biased << 23;  // n = -127 (x = -88) gives scale 0
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}
inline double exp_vec(double x) { return std::exp(x); }

// Sum of n values in 8 double lanes (vectorizable without reassociating one accumulator).
template <typename C>
PETAL_CPU_INLINE double lane_sum(const C* v, int64_t n) {
  double lane[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += static_cast<double>(v[i + j]);
  for (; i < n; ++i) lane[0] += static_cast<double>(v[i]);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// Sum of n products in 8 double lanes.
template <typename C>
PETAL_CPU_INLINE double lane_dot(const C* u, const C* v, int64_t n) {
  double lane[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += static_cast<double>(u[i + j]) * static_cast<double>(v[i + j]);
  for (; i < n; ++i) lane[0] += static_cast<double>(u[i]) * static_cast<double>(v[i]);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

template <typename C>
PETAL_CPU_INLINE C row_max(const C* x, int64_t n) {
  C lane[8];
  for (int j = 0; j < 8; ++j) lane[j] = -std::numeric_limits<C>::infinity();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] = std::isgreater(x[i + j], lane[j]) ? x[i + j] : lane[j];
  for (; i < n; ++i) lane[0] = std::isgreater(x[i], lane[0]) ? x[i] : lane[0];
  C mx = lane[0];
  for (int j = 1; j < 8; ++j) mx = lane[j] > mx ? lane[j] : mx;
  return mx;
}

// Forward on one row in the compute type C (y must not alias x).
template <typename C>
PETAL_CPU_INLINE void softmax_row(C* __restrict y, const C* __restrict x, int64_t n, bool log) {
  C mx = row_max(x, n);
  // A NaN never becomes the max but turns the sum into NaN, so the whole row is NaN.
  // A row of -inf: every exp(x - max) would be NaN; keep PyTorch's NaN result.
  if (mx == -std::numeric_limits<C>::infinity()) mx = 0;
  for (int64_t i = 0; i < n; ++i) y[i] = exp_vec(static_cast<C>(x[i] - mx));
  const double sum = lane_sum(y, n);
  if (log) {
    const C shift = mx + static_cast<C>(std::log(sum));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - shift;
  } else {
    const C inv = static_cast<C>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

// Backward on one row in the compute type C (dx may alias dy).
template <typename C>
PETAL_CPU_INLINE void softmax_backward_row(C* dx, const C* dy, const C* y, int64_t n, bool log) {
  if (log) {
    const C sc = static_cast<C>(lane_sum(dy, n));
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] - exp_vec(y[i]) * sc;
  } else {
    const C sc = static_cast<C>(lane_dot(dy, y, n));
    for (int64_t i = 0; i < n; ++i) dx[i] = y[i] * (dy[i] - sc);
  }
}

// Rows [r0, r1) of contiguous float matrices, in the two ISA variants.
PETAL_CPU_INLINE void softmax_rows_body(float* out, const float* in, int64_t r0, int64_t r1, int64_t cols, bool log) {
  for (int64_t r = r0; r < r1; ++r) softmax_row<float>(out + r * cols, in + r * cols, cols, log);
}
PETAL_CPU_INLINE void softmax_backward_rows_body(float* dx, const float* dy, const float* y, int64_t r0, int64_t r1,
                                                 int64_t cols, bool log) {
  for (int64_t r = r0; r < r1; ++r) softmax_backward_row<float>(dx + r * cols, dy + r * cols, y + r * cols, cols, log);
}
PETAL_CPU_INLINE void exp_body(float* __restrict y, const float* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_vec(x[i]);
}

void softmax_rows_baseline(float* out, const float* in, int64_t r0, int64_t r1, int64_t cols, bool log) {
  softmax_rows_body(out, in, r0, r1, cols, log);
}
void softmax_backward_rows_baseline(float* dx, const float* dy, const float* y, int64_t r0, int64_t r1, int64_t cols,
                                    bool log) {
  softmax_backward_rows_body(dx, dy, y, r0, r1, cols, log);
}
void exp_baseline(float* y, const float* x, int64_t n) { exp_body(y, x, n); }
#if PETAL_CPU_HAVE_AVX512_VARIANTS
PETAL_CPU_AVX512 void softmax_rows_avx512(float* out, const float* in, int64_t r0, int64_t r1, int64_t cols,
                                          bool log) {
  softmax_rows_body(out, in, r0, r1, cols, log);
}
PETAL_CPU_AVX512 void softmax_backward_rows_avx512(float* dx, const float* dy, const float* y, int64_t r0,
                                                   int64_t r1, int64_t cols, bool log) {
  softmax_backward_rows_body(dx, dy, y, r0, r1, cols, log);
}
PETAL_CPU_AVX512 void exp_avx512(float* y, const float* x, int64_t n) { exp_body(y, x, n); }
#endif

void softmax_rows(float* out, const float* in, int64_t r0, int64_t r1, int64_t cols, bool log) {
#if PETAL_CPU_HAVE_AVX512_VARIANTS
  if (avx512_enabled()) return softmax_rows_avx512(out, in, r0, r1, cols, log);
#endif
  softmax_rows_baseline(out, in, r0, r1, cols, log);
}
void softmax_backward_rows(float* dx, const float* dy, const float* y, int64_t r0, int64_t r1, int64_t cols, bool log) {
#if PETAL_CPU_HAVE_AVX512_VARIANTS
  if (avx512_enabled()) return softmax_backward_rows_avx512(dx, dy, y, r0, r1, cols, log);
#endif
  softmax_backward_rows_baseline(dx, dy, y, r0, r1, cols, log);
}

template <typename T>
constexpr bool kNative = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <typename T>
void softmax_typed(T* out, const T* in, int64_t rows, int64_t cols, bool log) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    if constexpr (std::is_same_v<T, float>) {
      softmax_rows(out, in, r0, r1, cols, log);
    } else if constexpr (kNative<T>) {
      for (int64_t r = r0; r < r1; ++r) softmax_row<T>(out + r * cols, in + r * cols, cols, log);
    } else {
      std::vector<float> xs(static_cast<size_t>(cols)), ys(static_cast<size_t>(cols));
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t i = 0; i < cols; ++i) xs[i] = load(in[r * cols + i]);
        softmax_rows(ys.data(), xs.data(), 0, 1, cols, log);
        for (int64_t i = 0; i < cols; ++i) out[r * cols + i] = store<T>(ys[i]);
      }
    }
  });
}

template <typename T>
void softmax_backward_typed(T* grad_in, const T* grad_out, const T* y, int64_t rows, int64_t cols, bool log) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    if constexpr (std::is_same_v<T, float>) {
      softmax_backward_rows(grad_in, grad_out, y, r0, r1, cols, log);
    } else if constexpr (kNative<T>) {
      for (int64_t r = r0; r < r1; ++r)
        softmax_backward_row<T>(grad_in + r * cols, grad_out + r * cols, y + r * cols, cols, log);
    } else {
      std::vector<float> dy(static_cast<size_t>(cols)), yy(static_cast<size_t>(cols));
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t i = 0; i < cols; ++i) {
          dy[i] = load(grad_out[r * cols + i]);
          yy[i] = load(y[r * cols + i]);
        }
        softmax_backward_rows(dy.data(), dy.data(), yy.data(), 0, 1, cols, log);
        for (int64_t i = 0; i < cols; ++i) grad_in[r * cols + i] = store<T>(dy[i]);
      }
    }
  });
}

}  // namespace

void cpu::softmax_exp(float* y, const float* x, int64_t n) {
#if PETAL_CPU_HAVE_AVX512_VARIANTS
  if (avx512_enabled()) return exp_avx512(y, x, n);
#endif
  exp_baseline(y, x, n);
}

void CpuBackend::softmax(void* out, const void* in, DType dtype, int64_t rows, int64_t cols, bool log) {
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_typed<T>(static_cast<T*>(out), static_cast<const T*>(in), rows, cols, log);
  });
}

void CpuBackend::softmax_backward(void* grad_in, const void* grad_out, const void* y, DType dtype, int64_t rows,
                                  int64_t cols, bool log) {
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_backward_typed<T>(static_cast<T*>(grad_in), static_cast<const T*>(grad_out), static_cast<const T*>(y), rows,
                              cols, log);
  });
}

}  // namespace petal::kernels
