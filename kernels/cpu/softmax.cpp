// CPU softmax and log_softmax over the rows of a contiguous [rows, cols] matrix, and
// their backward passes. Forward is the stable three-pass form: row max, sum of
// exp(x - max) (accumulated in double), then scale (softmax) or shift by max + log(sum)
// (log_softmax). Math runs in float for f32/bf16/f16 and double for f64; 16-bit rows are
// widened into a per-thread float buffer. OpenMP splits the rows.
//   softmax backward:     dx = y * (dy - sum(dy * y))
//   log_softmax backward: dx = dy - exp(y) * sum(dy)
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

// Rows per parallel chunk so each thread gets at least kParallelGrain elements.
inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)); }

// Forward on one row already in the compute type C (x and y may alias).
template <typename C>
void softmax_row(C* y, const C* x, int64_t n, bool log) {
  C mx = -std::numeric_limits<C>::infinity();
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  // A NaN never becomes the max but turns the sum into NaN, so the whole row is NaN.
  // A row of -inf: every exp(x - max) would be NaN; keep PyTorch's NaN result.
  if (mx == -std::numeric_limits<C>::infinity()) mx = 0;
  double sum = 0;
  if (log) {
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(std::exp(x[i] - mx));
    const C shift = mx + static_cast<C>(std::log(sum));
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] - shift;
  } else {
    for (int64_t i = 0; i < n; ++i) {
      C e = std::exp(x[i] - mx);
      y[i] = e;
      sum += static_cast<double>(e);
    }
    const C inv = static_cast<C>(1.0 / sum);
    for (int64_t i = 0; i < n; ++i) y[i] *= inv;
  }
}

// Backward on one row in the compute type C (dx may alias dy).
template <typename C>
void softmax_backward_row(C* dx, const C* dy, const C* y, int64_t n, bool log) {
  double s = 0;
  if (log) {
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(dy[i]);
    const C sc = static_cast<C>(s);
    for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] - std::exp(y[i]) * sc;
  } else {
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(dy[i]) * static_cast<double>(y[i]);
    const C sc = static_cast<C>(s);
    for (int64_t i = 0; i < n; ++i) dx[i] = y[i] * (dy[i] - sc);
  }
}

template <typename T>
constexpr bool kNative = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <typename T>
void softmax_typed(T* out, const T* in, int64_t rows, int64_t cols, bool log) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    if constexpr (kNative<T>) {
      for (int64_t r = r0; r < r1; ++r) softmax_row<T>(out + r * cols, in + r * cols, cols, log);
    } else {
      std::vector<float> buf(static_cast<size_t>(cols));
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t i = 0; i < cols; ++i) buf[i] = load(in[r * cols + i]);
        softmax_row<float>(buf.data(), buf.data(), cols, log);
        for (int64_t i = 0; i < cols; ++i) out[r * cols + i] = store<T>(buf[i]);
      }
    }
  });
}

template <typename T>
void softmax_backward_typed(T* grad_in, const T* grad_out, const T* y, int64_t rows, int64_t cols, bool log) {
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    if constexpr (kNative<T>) {
      for (int64_t r = r0; r < r1; ++r)
        softmax_backward_row<T>(grad_in + r * cols, grad_out + r * cols, y + r * cols, cols, log);
    } else {
      std::vector<float> dy(static_cast<size_t>(cols)), yy(static_cast<size_t>(cols));
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t i = 0; i < cols; ++i) {
          dy[i] = load(grad_out[r * cols + i]);
          yy[i] = load(y[r * cols + i]);
        }
        softmax_backward_row<float>(dy.data(), dy.data(), yy.data(), cols, log);
        for (int64_t i = 0; i < cols; ++i) grad_in[r * cols + i] = store<T>(dy[i]);
      }
    }
  });
}

}  // namespace

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
    softmax_backward_typed<T>(static_cast<T*>(grad_in), static_cast<const T*>(grad_out), static_cast<const T*>(y),
                              rows, cols, log);
  });
}

}  // namespace petal::kernels
