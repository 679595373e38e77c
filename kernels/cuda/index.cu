// Indexing kernels with int64 indices that core/ has already bounds-checked:
//  - index_select: out[.., i, ..] = x[.., index[i], ..] (contiguous out and x);
//  - index_add:    out[.., index[i], ..] += src[.., i, ..] (contiguous out and src);
//  - gather:       out[p] = x[p with p[dim] = index[p]] (any strides);
//  - scatter_add:  out[p with p[dim] = index[p]] += src[p] (any strides).
// One thread per element in grid-stride loops. Selection kernels move raw bits (one
// instantiation per element width); the accumulating ones use atomic_add because
// repeated indices make several threads hit one output (float sums are then
// order-dependent in their last bits; 16-bit floats add in float and round).
#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

// [outer, size(dim), inner] factorization of a contiguous view around dim.
struct AroundDim {
  int64_t outer = 1, size = 1, inner = 1;
  AroundDim(const View& v, int dim) {
    for (int d = 0; d < dim; ++d) outer *= v.shape[d];
    size = v.ndim > 0 ? v.shape[dim] : 1;
    for (int d = dim + 1; d < v.ndim; ++d) inner *= v.shape[d];
  }
};

// base's strides laid over index's shape with the indexed dim's stride zeroed: the
// offset of a position in this view is where its line of base starts along dim.
View base_view(const View& base, const View& index, int dim) {
  View v = index;
  v.data = base.data;
  v.dtype = base.dtype;
  for (int d = 0; d < v.ndim; ++d) v.strides[d] = d == dim ? 0 : base.strides[d];
  return v;
}

#define PETAL_GRID_STRIDE_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <typename U>
static __global__ void index_select_kernel(int64_t total, int64_t n, int64_t size, int64_t inner, U* out, const U* x,
                                           const int64_t* index) {
  PETAL_GRID_STRIDE_LOOP(t, total) {
    const int64_t c = t % inner, row = t / inner;
    const int64_t i = row % n, o = row / n;
    out[t] = x[(o * size + index[i]) * inner + c];
  }
}

template <typename T>
static __global__ void index_add_kernel(int64_t total, int64_t n, int64_t size, int64_t inner, T* out, const T* src,
                                        const int64_t* index) {
  PETAL_GRID_STRIDE_LOOP(t, total) {
    const int64_t c = t % inner, row = t / inner;
    const int64_t i = row % n, o = row / n;
    atomic_add(out + (o * size + index[i]) * inner + c, to_acc(src[t]));
  }
}

// calc views: {out, index, x base}.
template <typename U>
static __global__ void gather_kernel(OffsetCalc<3> calc, int64_t total, int64_t dim_stride, U* out, const U* x,
                                     const int64_t* index) {
  PETAL_GRID_STRIDE_LOOP(t, total) {
    int64_t off[3];
    calc.get(t, off);
    out[off[0]] = x[off[2] + index[off[1]] * dim_stride];
  }
}

// calc views: {out base, index, src}.
template <typename T>
static __global__ void scatter_add_kernel(OffsetCalc<3> calc, int64_t total, int64_t dim_stride, T* out, const T* src,
                                          const int64_t* index) {
  PETAL_GRID_STRIDE_LOOP(t, total) {
    int64_t off[3];
    calc.get(t, off);
    atomic_add(out + off[0] + index[off[1]] * dim_stride, to_acc(src[off[2]]));
  }
}

}  // namespace

void CudaBackend::index_select(const View& out, const View& x, int dim, const View& index) {
  const AroundDim xs(x, dim);
  const int64_t n = index.numel();
  const int64_t total = xs.outer * n * xs.inner;
  if (total == 0) return;
  Stream stream = activate();
  dispatch_bits(x.dtype, [&](auto tag) {
    using U = typename decltype(tag)::type;
    PETAL_LAUNCH(index_select_kernel<U>, grid_for(total), kBlockSize, 0, stream, total, n, xs.size, xs.inner,
                 static_cast<U*>(out.data), static_cast<const U*>(x.data), static_cast<const int64_t*>(index.data));
  });
}

void CudaBackend::index_add(const View& out, int dim, const View& index, const View& src) {
  const AroundDim os(out, dim);
  const int64_t n = index.numel();
  const int64_t total = os.outer * n * os.inner;
  if (total == 0) return;
  Stream stream = activate();
  dispatch_all(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    PETAL_LAUNCH(index_add_kernel<T>, grid_for(total), kBlockSize, 0, stream, total, n, os.size, os.inner,
                 static_cast<T*>(out.data), static_cast<const T*>(src.data), static_cast<const int64_t*>(index.data));
  });
}

void CudaBackend::gather(const View& out, const View& x, int dim, const View& index) {
  const int64_t total = index.numel();
  if (total == 0) return;
  Stream stream = activate();
  const View xb = base_view(x, index, dim);
  const View* views[3] = {&out, &index, &xb};
  const OffsetCalc<3> calc = make_offset_calc(views);
  const int64_t dim_stride = x.ndim > 0 ? x.strides[dim] : 0;
  dispatch_bits(x.dtype, [&](auto tag) {
    using U = typename decltype(tag)::type;
    PETAL_LAUNCH(gather_kernel<U>, grid_for(total), kBlockSize, 0, stream, calc, total, dim_stride,
                 static_cast<U*>(out.data), static_cast<const U*>(x.data), static_cast<const int64_t*>(index.data));
  });
}

void CudaBackend::scatter_add(const View& out, int dim, const View& index, const View& src) {
  const int64_t total = index.numel();
  if (total == 0) return;
  Stream stream = activate();
  const View ob = base_view(out, index, dim);
  const View* views[3] = {&ob, &index, &src};
  const OffsetCalc<3> calc = make_offset_calc(views);
  const int64_t dim_stride = out.ndim > 0 ? out.strides[dim] : 0;
  dispatch_all(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    PETAL_LAUNCH(scatter_add_kernel<T>, grid_for(total), kBlockSize, 0, stream, calc, total, dim_stride,
                 static_cast<T*>(out.data), static_cast<const T*>(src.data), static_cast<const int64_t*>(index.data));
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
