// LayerNorm over the rows of a contiguous [rows, cols] matrix, forward and backward.
// Forward: one block per row (grid-stride over rows), block size fitted to cols. The row
// is staged once in dynamic shared memory in the accumulator type when it fits, then
// mean (block_reduce), variance of the centered values (block_reduce: two-pass, no
// cancellation) and y = (x - mean) * rstd * weight + bias are computed from the stage.
// Mean and rstd are saved in the statistics type (f64 for f64 inputs, else f32).
// Backward, with xhat = (x - mean) * rstd and g = dy * weight:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))       (one block per row)
//   dweight = sum_rows dy * xhat, dbias = sum_rows dy
// The dx kernel also folds each block's rows into its own row of a [blocks, cols]
// accumulator-type buffer (each thread owns fixed columns, so no atomics); a second
// kernel sums that buffer over blocks per column in a fixed order: deterministic.
#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

constexpr size_t kMaxStagedRowBytes = 32 * 1024;
// Blocks of the backward dx kernel (each owns one row of the partial-sum buffer).
constexpr int64_t kMaxBackwardBlocks = 512;

template <typename T, typename A>
static __global__ void layer_norm_forward_kernel(T* y, A* mean_out, A* rstd_out, const T* x, const T* weight,
                                                 const T* bias, int64_t rows, int64_t cols, A eps, bool staged) {
  PETAL_DYNAMIC_SHARED(A, row_cache);
  PETAL_SHARED(A, scratch, [kWarpSize]);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    A s = A(0);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const A v = to_acc(xr[i]);
      if (staged) row_cache[i] = v;
      s += v;
    }
    const A mu = block_reduce(s, SumOp(), scratch) / A(cols);
    A q = A(0);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const A d = (staged ? row_cache[i] : A(to_acc(xr[i]))) - mu;
      q += d * d;
    }
    const A var = block_reduce(q, SumOp(), scratch) / A(cols);
    const A rs = A(1) / dmath::sqrt(var + eps);
    if (threadIdx.x == 0) {
      mean_out[r] = mu;
      rstd_out[r] = rs;
    }
    T* yr = y + r * cols;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      A o = ((staged ? row_cache[i] : A(to_acc(xr[i]))) - mu) * rs;
      if (weight) o *= A(to_acc(weight[i]));
      if (bias) o += A(to_acc(bias[i]));
      yr[i] = from_acc<T>(o);
    }
  }
}

// dx per row; when partial_w is non-null, also partial_w/b[blockIdx.x, i] = sum over this
// block's rows of dy * xhat and dy (each thread owns columns i = threadIdx.x + k * blockDim.x).
template <typename T, typename A>
static __global__ void layer_norm_backward_dx_kernel(T* dx, A* partial_w, A* partial_b, const T* dy, const T* x,
                                                     const A* mean, const A* rstd, const T* weight, int64_t rows,
                                                     int64_t cols) {
  PETAL_SHARED(A, scratch, [kWarpSize]);
  if (partial_w)
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      partial_w[blockIdx.x * cols + i] = A(0);
      partial_b[blockIdx.x * cols + i] = A(0);
    }
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * cols;
    const T* dyr = dy + r * cols;
    const A m = mean[r], k = rstd[r];
    A sg = A(0), sgx = A(0);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const A xh = (A(to_acc(xr[i])) - m) * k;
      A g = to_acc(dyr[i]);
      if (weight) g *= A(to_acc(weight[i]));
      sg += g;
      sgx += g * xh;
    }
    const A mg = block_reduce(sg, SumOp(), scratch) / A(cols);
    const A mgx = block_reduce(sgx, SumOp(), scratch) / A(cols);
    T* dxr = dx + r * cols;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const A xh = (A(to_acc(xr[i])) - m) * k;
      const A d = to_acc(dyr[i]);
      const A g = weight ? d * A(to_acc(weight[i])) : d;
      dxr[i] = from_acc<T>(k * (g - mg - xh * mgx));
      if (partial_w) {
        partial_w[blockIdx.x * cols + i] += d * xh;
        partial_b[blockIdx.x * cols + i] += d;
      }
    }
  }
}

// dweight[i] / dbias[i] = sum over the `parts` rows of the partial buffers (one thread per column).
template <typename T, typename A>
static __global__ void layer_norm_backward_params_kernel(T* dweight, T* dbias, const A* partial_w,
                                                         const A* partial_b, int64_t parts, int64_t cols) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < cols; i += int64_t(gridDim.x) * blockDim.x) {
    A sw = A(0), sb = A(0);
    for (int64_t p = 0; p < parts; ++p) {
      sw += partial_w[p * cols + i];
      sb += partial_b[p * cols + i];
    }
    if (dweight) dweight[i] = from_acc<T>(sw);
    if (dbias) dbias[i] = from_acc<T>(sb);
  }
}

int threads_for(int64_t cols) {
  if (cols <= 32) return 32;
  if (cols <= 64) return 64;
  if (cols <= 512) return 128;
  return 256;
}

// Device scratch memory released at scope exit.
class Scratch {
 public:
  Scratch(Backend& backend, size_t nbytes)
      : backend_(backend), ptr_(nbytes > 0 ? backend.allocate(nbytes) : nullptr) {}
  ~Scratch() {
    // A failing free must not terminate from a destructor; a broken device fails the next call.
    try {
      if (ptr_ != nullptr) backend_.deallocate(ptr_);
    } catch (...) {
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return ptr_; }

 private:
  Backend& backend_;
  void* ptr_;
};

}  // namespace

void CudaBackend::layer_norm_forward(void* y, void* mean, void* rstd, const void* x, const void* weight,
                                     const void* bias, DType dtype, int64_t rows, int64_t cols, double eps) {
  if (rows == 0 || cols == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const size_t row_bytes = static_cast<size_t>(cols) * sizeof(A);
    const bool staged = row_bytes <= kMaxStagedRowBytes;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
    PETAL_LAUNCH((layer_norm_forward_kernel<T, A>), blocks, threads_for(cols), staged ? row_bytes : 0, stream,
                 static_cast<T*>(y), static_cast<A*>(mean), static_cast<A*>(rstd), static_cast<const T*>(x),
                 static_cast<const T*>(weight), static_cast<const T*>(bias), rows, cols, static_cast<A>(eps), staged);
  });
}

void CudaBackend::layer_norm_backward(void* dx, void* dweight, void* dbias, const void* dy, const void* x,
                                      const void* mean, const void* rstd, const void* weight, DType dtype,
                                      int64_t rows, int64_t cols) {
  if (cols == 0) return;
  Stream stream = activate();
  dispatch_floating(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const bool param_grads = dweight != nullptr || dbias != nullptr;
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(rows, kMaxBackwardBlocks));
    const size_t part_bytes = static_cast<size_t>(blocks * cols) * sizeof(A);
    Scratch partial(*this, param_grads ? 2 * part_bytes : 0);
    A* partial_w = param_grads ? static_cast<A*>(partial.get()) : nullptr;
    A* partial_b = param_grads ? partial_w + blocks * cols : nullptr;
    if (rows > 0 || param_grads)
      PETAL_LAUNCH((layer_norm_backward_dx_kernel<T, A>), static_cast<unsigned>(blocks), threads_for(cols), 0, stream,
                   static_cast<T*>(dx), partial_w, partial_b, static_cast<const T*>(dy), static_cast<const T*>(x),
                   static_cast<const A*>(mean), static_cast<const A*>(rstd), static_cast<const T*>(weight), rows,
                   cols);
    if (param_grads)
      PETAL_LAUNCH((layer_norm_backward_params_kernel<T, A>), grid_for(cols), kBlockSize, 0, stream,
                   static_cast<T*>(dweight), static_cast<T*>(dbias), static_cast<const A*>(partial_w),
                   static_cast<const A*>(partial_b), blocks, cols);
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
