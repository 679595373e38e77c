// Softmax cross-entropy over the rows of contiguous logits [rows, classes] with int64
// targets and label smoothing s (torch.nn.functional.cross_entropy, per row):
//   loss[r] = lse - (1 - s) x_t - (s / C) sum_c x_c,   lse = log sum_c exp(x_c),
// and grad_logits = grad_loss[r] * (exp(x_c - lse) - q_c), q = (1 - s) onehot(t) + s / C.
// Forward: one block per row (grid-stride over rows), block size fitted to classes. Each
// thread folds its strided elements into an online (max, sum of exp) pair, rescaling the
// sum whenever its max grows, so the row is read once; the pairs are merged with two
// block_reduce calls (max, then the rescaled sums), alongside the plain sum of x.
// Backward: elementwise over rows x classes (grid-stride), from the saved lse.
// loss, lse and grad_loss are per-row values in the accumulator type (f64 for f64
// logits, else f32). Rows whose target == ignore_index get loss 0 and a zero gradient; a
// target outside [0, classes) gives NaN (loss and gradient row) without reading outside the
// row: core/ops/cross_entropy.cpp reports it as an error.
#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

template <typename T, typename A>
static __global__ void cross_entropy_forward_kernel(A* loss, A* lse_out, const T* logits, const int64_t* target,
                                                    int64_t rows, int64_t classes, A smoothing,
                                                    int64_t ignore_index) {
  PETAL_SHARED(A, scratch, [kWarpSize]);
  const A neg_inf = -std::numeric_limits<A>::infinity();
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* x = logits + r * classes;
    A m = neg_inf, s = A(0), sx = A(0);
    for (int64_t c = threadIdx.x; c < classes; c += blockDim.x) {
      const A v = to_acc(x[c]);
      sx += v;
      if (v > m) {
        s = s * dmath::exp(m - v) + A(1);  // exp(-inf) = 0 on the first element
        m = v;
      } else if (v != neg_inf) {
        s += dmath::exp(v - m);  // NaN propagates into the sum
      }
    }
    const A mx = block_reduce(m, MaxOp(), scratch);
    const A shift = (mx == neg_inf || mx == -neg_inf) ? A(0) : mx;
    A part = A(0);
    if (m != neg_inf) part = s * dmath::exp(m - shift);
    const A total = block_reduce(part, SumOp(), scratch);
    const A sum_x = block_reduce(sx, SumOp(), scratch);
    if (threadIdx.x == 0) {
      const A lse = shift + dmath::log(total);
      lse_out[r] = lse;
      const int64_t t = target[r];
      if (t == ignore_index) {
        loss[r] = A(0);
      } else if (t < 0 || t >= classes) {
        // Out of range: core reports it at the next synchronization; never read past the row.
        loss[r] = A(NAN);
      } else {
        A l = lse - (A(1) - smoothing) * A(to_acc(x[t]));
        if (smoothing > A(0)) l -= smoothing / A(classes) * sum_x;
        loss[r] = l;
      }
    }
  }
}

template <typename T, typename A>
static __global__ void cross_entropy_backward_kernel(T* grad, const A* grad_loss, const T* logits, const A* lse,
                                                     const int64_t* target, int64_t rows, int64_t classes,
                                                     A smoothing, int64_t ignore_index) {
  const int64_t n = rows * classes;
  const A off = smoothing / A(classes), on = A(1) - smoothing;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / classes, c = i - r * classes;
    const int64_t t = target[r];
    A g = A(0);
    if (t != ignore_index && (t < 0 || t >= classes)) {
      g = A(NAN);  // an out-of-range target (reported by core)
    } else if (t != ignore_index) {
      const A q = c == t ? off + on : off;
      g = grad_loss[r] * (dmath::exp(A(to_acc(logits[i])) - lse[r]) - q);
    }
    grad[i] = from_acc<T>(g);
  }
}

int threads_for(int64_t classes) {
  if (classes <= 32) return 32;
  if (classes <= 64) return 64;
  if (classes <= 512) return 128;
  return 256;
}

}  // namespace

void CudaBackend::cross_entropy_forward(void* loss, void* lse, const void* logits, const int64_t* target, DType dtype,
                                        int64_t rows, int64_t classes, double label_smoothing, int64_t ignore_index) {
  if (rows == 0 || classes == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
    PETAL_LAUNCH((cross_entropy_forward_kernel<T, A>), blocks, threads_for(classes), 0, stream, static_cast<A*>(loss),
                 static_cast<A*>(lse), static_cast<const T*>(logits), target, rows, classes,
                 static_cast<A>(label_smoothing), ignore_index);
  });
}

void CudaBackend::cross_entropy_backward(void* grad_logits, const void* grad_loss, const void* logits,
                                         const void* lse, const int64_t* target, DType dtype, int64_t rows,
                                         int64_t classes, double label_smoothing, int64_t ignore_index) {
  if (rows == 0 || classes == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    PETAL_LAUNCH((cross_entropy_backward_kernel<T, A>), grid_for(rows * classes), kBlockSize, 0, stream,
                 static_cast<T*>(grad_logits), static_cast<const A*>(grad_loss), static_cast<const T*>(logits),
                 static_cast<const A*>(lse), target, rows, classes, static_cast<A>(label_smoothing), ignore_index);
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
