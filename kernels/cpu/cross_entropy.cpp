// CPU softmax cross-entropy over the rows of contiguous logits [rows, classes] with int64
// targets and label smoothing s (torch.nn.functional.cross_entropy, per row):
//   loss[r] = -sum_c q_c (x_c - lse) = lse - (1 - s) x_t - (s / C) sum_c x_c,
//   q = (1 - s) onehot(t) + s / C,  lse = max + log(sum_c exp(x_c - max)),
// so one read of the row (max, then sum of exp and of x) gives the loss without writing
// log-probabilities. loss, lse and grad_loss are per-row values in the statistics type
// (f64 for f64 logits, else f32). Rows whose target == ignore_index get loss 0 and a zero
// gradient. Backward: grad_logits = grad_loss[r] * (exp(x_c - lse) - q_c).
// Sums accumulate in double; OpenMP splits the rows. core/ checked every target.
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(cols, 1)); }

template <typename T>
using stat_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
void cross_entropy_forward_typed(stat_t<T>* loss, stat_t<T>* lse_out, const T* logits, const int64_t* target,
                                 int64_t rows, int64_t classes, double smoothing, int64_t ignore_index) {
  using C = typename Acc<T>::type;
  parallel_for(rows, row_grain(classes), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = logits + r * classes;
      C mx = -std::numeric_limits<C>::infinity();
      for (int64_t c = 0; c < classes; ++c) mx = std::max<C>(mx, load(x[c]));
      const C shift = std::isinf(mx) ? C(0) : mx;  // all -inf (or +inf) rows: no inf - inf
      double se = 0, sx = 0;
      for (int64_t c = 0; c < classes; ++c) {
        const C v = load(x[c]);
        se += static_cast<double>(std::exp(v - shift));
        sx += static_cast<double>(v);
      }
      const double lse = static_cast<double>(shift) + std::log(se);
      lse_out[r] = static_cast<stat_t<T>>(lse);
      const int64_t t = target[r];
      if (t == ignore_index) {
        loss[r] = 0;
        continue;
      }
      if (t < 0 || t >= classes) {  // reported by core; never read outside the row
        loss[r] = std::numeric_limits<stat_t<T>>::quiet_NaN();
        continue;
      }
      const double xt = static_cast<double>(load(x[t]));
      double l = lse - (1.0 - smoothing) * xt;
      if (smoothing > 0) l -= smoothing / static_cast<double>(classes) * sx;
      loss[r] = static_cast<stat_t<T>>(l);
    }
  });
}

template <typename T>
void cross_entropy_backward_typed(T* grad, const stat_t<T>* grad_loss, const T* logits, const stat_t<T>* lse,
                                  const int64_t* target, int64_t rows, int64_t classes, double smoothing,
                                  int64_t ignore_index) {
  using C = typename Acc<T>::type;
  const C off = static_cast<C>(smoothing / static_cast<double>(classes));
  const C on = static_cast<C>(1.0 - smoothing);
  parallel_for(rows, row_grain(classes), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* x = logits + r * classes;
      T* g = grad + r * classes;
      const int64_t t = target[r];
      if (t == ignore_index) {
        for (int64_t c = 0; c < classes; ++c) g[c] = store<T>(C(0));
        continue;
      }
      if (t < 0 || t >= classes) {
        for (int64_t c = 0; c < classes; ++c) g[c] = store<T>(std::numeric_limits<C>::quiet_NaN());
        continue;
      }
      const C gl = static_cast<C>(grad_loss[r]), l = static_cast<C>(lse[r]);
      for (int64_t c = 0; c < classes; ++c) g[c] = store<T>(gl * (std::exp(load(x[c]) - l) - off));
      g[t] = store<T>(gl * (std::exp(load(x[t]) - l) - off - on));
    }
  });
}

}  // namespace

void CpuBackend::cross_entropy_forward(void* loss, void* lse, const void* logits, const int64_t* target, DType dtype,
                                       int64_t rows, int64_t classes, double label_smoothing, int64_t ignore_index) {
  if (rows == 0 || classes == 0) return;
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_forward_typed<T>(static_cast<stat_t<T>*>(loss), static_cast<stat_t<T>*>(lse),
                                   static_cast<const T*>(logits), target, rows, classes, label_smoothing,
                                   ignore_index);
  });
}

void CpuBackend::cross_entropy_backward(void* grad_logits, const void* grad_loss, const void* logits, const void* lse,
                                        const int64_t* target, DType dtype, int64_t rows, int64_t classes,
                                        double label_smoothing, int64_t ignore_index) {
  if (rows == 0 || classes == 0) return;
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_backward_typed<T>(static_cast<T*>(grad_logits), static_cast<const stat_t<T>*>(grad_loss),
                                    static_cast<const T*>(logits), static_cast<const stat_t<T>*>(lse), target, rows,
                                    classes, label_smoothing, ignore_index);
  });
}

}  // namespace petal::kernels
