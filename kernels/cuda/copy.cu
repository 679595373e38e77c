// Strided copy with dtype conversion, and fill. A contiguous same-dtype copy is a
// device memcpy; a same-dtype strided copy moves raw bits (one kernel per element
// width); a converting copy runs one thread per element through the offset calculator,
// converting with the CPU backend's rules (16-bit floats round through float,
// bool is v != 0). A contiguous converting copy takes the vectorized path.
#include <cstring>

#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

template <typename D, typename S>
__device__ inline D convert(S v) {
  if constexpr (std::is_same_v<D, S>) {
    return v;
  } else {
    return from_acc<D>(to_acc(v));
  }
}

template <typename D, typename S>
static __global__ void copy_strided_kernel(OffsetCalc<2> calc, int64_t n, D* dst, const S* src) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    calc.get(i, off);
    dst[off[0]] = convert<D>(src[off[1]]);
  }
}

// Contiguous conversion: each thread converts one vector of the source at a time.
template <typename D, typename S>
static __global__ void copy_contiguous_kernel(int64_t n, D* dst, const S* src) {
  constexpr int V = Vector<S>::kSize;
  const int64_t vectors = n / V;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < vectors; v += stride) {
    const Vector<S> in = load_vector(src + v * V);
PETAL_UNROLL
    for (int j = 0; j < V; ++j) dst[v * V + j] = convert<D>(in.v[j]);
  }
  for (int64_t i = vectors * V + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride)
    dst[i] = convert<D>(src[i]);
}

template <typename T>
static __global__ void fill_kernel(OffsetCalc<1> calc, int64_t n, T* dst, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    calc.get(i, off);
    dst[off[0]] = value;
  }
}

template <typename D, typename S>
static void launch_copy(const View& dst, const View& src, Stream stream) {
  const View* views[2] = {&dst, &src};
  const OffsetCalc<2> calc = make_offset_calc(views);
  const int64_t n = dst.numel();
  D* d = static_cast<D*>(dst.data);
  const S* s = static_cast<const S*>(src.data);
  if (calc.contiguous() && vector_aligned({s})) {
    PETAL_LAUNCH((copy_contiguous_kernel<D, S>), grid_for(n / Vector<S>::kSize + 1), kBlockSize, 0, stream, n, d,
                 s);
  } else {
    PETAL_LAUNCH((copy_strided_kernel<D, S>), grid_for(n), kBlockSize, 0, stream, calc, n, d, s);
  }
}

template <typename T>
static void launch_fill(const View& dst, T value, Stream stream) {
  const View* views[1] = {&dst};
  const int64_t n = dst.numel();
  PETAL_LAUNCH(fill_kernel<T>, grid_for(n), kBlockSize, 0, stream, make_offset_calc(views), n,
               static_cast<T*>(dst.data), value);
}

bool broadcasts(const View& v) {
  for (int i = 0; i < v.ndim; ++i)
    if (v.strides[i] == 0 && v.shape[i] > 1) return true;
  return false;
}

}  // namespace

void CudaBackend::copy(const View& dst, const View& src) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  Stream stream = activate();
  if (dst.dtype == src.dtype) {
    if (dst.is_contiguous() && src.is_contiguous() && !broadcasts(src)) {
      rt_memcpy_d2d(dst.data, src.data, static_cast<size_t>(n) * dtype_size(dst.dtype));
      return;
    }
    dispatch_bits(dst.dtype, [&](auto tag) {
      using U = typename decltype(tag)::type;
      launch_copy<U, U>(dst, src, stream);
    });
    return;
  }
  dispatch_all(dst.dtype, [&](auto dt) {
    using D = typename decltype(dt)::type;
    dispatch_all(src.dtype, [&](auto st) {
      using S = typename decltype(st)::type;
      launch_copy<D, S>(dst, src, stream);
    });
  });
}

void CudaBackend::fill(const View& dst, double value) {
  if (dst.numel() == 0) return;
  Stream stream = activate();
  dispatch_all(dst.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = from_acc<T>(value);
    // Fill moves bits only: one kernel per element width.
    dispatch_bits(dst.dtype, [&](auto bits) {
      using U = typename decltype(bits)::type;
      if constexpr (sizeof(T) == sizeof(U)) {
        U u;
        std::memcpy(&u, &v, sizeof(U));
        launch_fill<U>(dst, u, stream);
      }
    });
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
