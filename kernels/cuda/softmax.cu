// softmax and log_softmax over the rows of a contiguous [rows, cols] matrix, and their
// backward passes. One block per row (grid-stride over rows), block size fitted to cols.
// Forward is the numerically stable three-pass form: row max (block_reduce), sum of
// exp(x - max) (block_reduce), then scale (softmax) or shift by max + log(sum)
// (log_softmax). When the row fits, it is staged once in dynamic shared memory in the
// accumulator type (float for f32/bf16/f16, double for f64) so the three passes read
// global memory once (each thread reads back only the elements it staged, so staging
// needs no barrier of its own). As in the CPU backend, a row of -inf gives NaN and a NaN makes the
// whole row NaN.
//   softmax backward:     dx = y * (dy - sum(dy * y))
//   log_softmax backward: dx = dy - exp(y) * sum(dy)
#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

// Rows up to this many bytes (in the accumulator type) are staged in shared memory.
constexpr size_t kMaxStagedRowBytes = 32 * 1024;

template <typename T, typename A>
static __global__ void softmax_forward_kernel(const T* in, T* out, int64_t rows, int64_t cols, bool log,
                                              bool staged) {
  PETAL_DYNAMIC_SHARED(A, row_cache);
  PETAL_SHARED(A, scratch, [kWarpSize]);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* x = in + r * cols;
    T* y = out + r * cols;
    A mx = -std::numeric_limits<A>::infinity();
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const A v = to_acc(x[i]);
      if (staged) row_cache[i] = v;
      mx = MaxOp()(mx, v);
    }
    mx = block_reduce(mx, MaxOp(), scratch);
    if (mx == -std::numeric_limits<A>::infinity()) mx = A(0);
    A sum = A(0);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const A v = staged ? row_cache[i] : A(to_acc(x[i]));
      sum += dmath::exp(v - mx);
    }
    sum = block_reduce(sum, SumOp(), scratch);
    if (log) {
      const A shift = mx + dmath::log(sum);
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        const A v = staged ? row_cache[i] : A(to_acc(x[i]));
        y[i] = from_acc<T>(v - shift);
      }
    } else {
      const A inv = A(1) / sum;
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        const A v = staged ? row_cache[i] : A(to_acc(x[i]));
        y[i] = from_acc<T>(dmath::exp(v - mx) * inv);
      }
    }
  }
}

template <typename T, typename A>
static __global__ void softmax_backward_kernel(const T* grad_out, const T* y, T* grad_in, int64_t rows, int64_t cols,
                                               bool log) {
  PETAL_SHARED(A, scratch, [kWarpSize]);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* dy = grad_out + r * cols;
    const T* yr = y + r * cols;
    T* dx = grad_in + r * cols;
    A s = A(0);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x)
      s += log ? A(to_acc(dy[i])) : A(to_acc(dy[i])) * A(to_acc(yr[i]));
    s = block_reduce(s, SumOp(), scratch);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const A g = to_acc(dy[i]), v = to_acc(yr[i]);
      dx[i] = from_acc<T>(log ? g - dmath::exp(v) * s : v * (g - s));
    }
  }
}

int threads_for(int64_t cols) {
  if (cols <= 32) return 32;
  if (cols <= 64) return 64;
  if (cols <= 512) return 128;
  return 256;
}

unsigned blocks_for(int64_t rows) { return static_cast<unsigned>(std::min<int64_t>(rows, 65535)); }

}  // namespace

void CudaBackend::softmax(void* out, const void* in, DType dtype, int64_t rows, int64_t cols, bool log) {
  if (rows == 0 || cols == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const size_t row_bytes = static_cast<size_t>(cols) * sizeof(A);
    const bool staged = row_bytes <= kMaxStagedRowBytes;
    PETAL_LAUNCH((softmax_forward_kernel<T, A>), blocks_for(rows), threads_for(cols), staged ? row_bytes : 0, stream,
                 static_cast<const T*>(in), static_cast<T*>(out), rows, cols, log, staged);
  });
}

void CudaBackend::softmax_backward(void* grad_in, const void* grad_out, const void* y, DType dtype, int64_t rows,
                                   int64_t cols, bool log) {
  if (rows == 0 || cols == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    PETAL_LAUNCH((softmax_backward_kernel<T, A>), blocks_for(rows), threads_for(cols), 0, stream,
                 static_cast<const T*>(grad_out), static_cast<const T*>(y), static_cast<T*>(grad_in), rows, cols, log);
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
