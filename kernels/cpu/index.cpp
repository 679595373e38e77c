// CPU indexing kernels with int64 indices that core/ has already bounds-checked:
//  - index_select: out[.., i, ..] = x[.., index[i], ..]; contiguous rows copied with memcpy.
//  - index_add:    out[.., index[i], ..] += src[.., i, ..]; threads own disjoint column
//                  blocks, so repeated indices never race.
//  - gather:       out[p] = x[p with p[dim] = index[p]] over any strides.
//  - scatter_add:  out[p with p[dim] = index[p]] += src[p]; serial, since any two
//                  elements may hit the same output.
// Accumulation happens in the element's compute type (float for bf16/f16).
#include <cstring>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

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

// x's strides laid over index's shape, with the indexed dim's stride zeroed: the offset
// of a position in this view is where its row of x starts; index * x.strides[dim] is added.
View base_view(const View& x, const View& index, int dim) {
  View v = index;
  v.data = x.data;
  v.dtype = x.dtype;
  for (int d = 0; d < v.ndim; ++d) v.strides[d] = d == dim ? 0 : x.strides[d];
  return v;
}

template <typename T>
void scatter_add_typed(const View& out, int dim, const View& index, const View& src) {
  View ob = base_view(out, index, dim);
  const View* const geo[3] = {&ob, &index, &src};
  Strided<3> g(geo);
  T* o = static_cast<T*>(out.data);
  const int64_t* ix = static_cast<const int64_t*>(index.data);
  const T* s = static_cast<const T*>(src.data);
  const int64_t dim_stride = out.ndim > 0 ? out.strides[dim] : 0;
  const int last = g.ndim - 1;
  int64_t idx[kMaxDims] = {};
  int64_t rows = 1;
  for (int d = 0; d < last; ++d) rows *= g.shape[d];
  for (int64_t r = 0; r < rows; ++r) {
    int64_t off[3] = {0, 0, 0};
    for (int k = 0; k < 3; ++k)
      for (int d = 0; d < last; ++d) off[k] += idx[d] * g.strides[k][d];
    for (int64_t i = 0; i < g.shape[last]; ++i) {
      T& dst = o[off[0] + i * g.strides[0][last] + ix[off[1] + i * g.strides[1][last]] * dim_stride];
      dst = store<T>(load(dst) + load(s[off[2] + i * g.strides[2][last]]));
    }
    for (int d = last - 1; d >= 0; --d) {
      if (++idx[d] < g.shape[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

void CpuBackend::index_select(const View& out, const View& x, int dim, const View& index) {
  const AroundDim xs(x, dim);
  const int64_t n = index.numel();
  const size_t es = dtype_size(x.dtype);
  const size_t row_bytes = static_cast<size_t>(xs.inner) * es;
  const int64_t* ix = static_cast<const int64_t*>(index.data);
  const char* src = static_cast<const char*>(x.data);
  char* dst = static_cast<char*>(out.data);
  parallel_for(xs.outer * n, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, xs.inner)),
               [&](int64_t t0, int64_t t1) {
                 for (int64_t t = t0; t < t1; ++t) {
                   const int64_t o = t / n, i = t % n;
                   std::memcpy(dst + static_cast<size_t>(t) * row_bytes,
                               src + static_cast<size_t>(o * xs.size + ix[i]) * row_bytes, row_bytes);
                 }
               });
}

void CpuBackend::index_add(const View& out, int dim, const View& index, const View& src) {
  const AroundDim os(out, dim);
  const int64_t n = index.numel();
  const int64_t* ix = static_cast<const int64_t*>(index.data);
  constexpr int64_t kColumns = 512;
  const int64_t col_blocks = (os.inner + kColumns - 1) / kColumns;
  dispatch_all(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.data);
    const T* s = static_cast<const T*>(src.data);
    // Task = (outer slice, column block): disjoint outputs, so no two threads collide.
    parallel_for(os.outer * col_blocks, std::max<int64_t>(1, kParallelGrain / std::max<int64_t>(1, n * kColumns)),
                 [&](int64_t t0, int64_t t1) {
                   for (int64_t t = t0; t < t1; ++t) {
                     const int64_t ou = t / col_blocks, c0 = (t % col_blocks) * kColumns;
                     const int64_t c1 = std::min(os.inner, c0 + kColumns);
                     for (int64_t i = 0; i < n; ++i) {
                       T* dst = o + (ou * os.size + ix[i]) * os.inner;
                       const T* from = s + (ou * n + i) * os.inner;
                       for (int64_t c = c0; c < c1; ++c) dst[c] = store<T>(load(dst[c]) + load(from[c]));
                     }
                   }
                 });
  });
}

void CpuBackend::gather(const View& out, const View& x, int dim, const View& index) {
  View xb = base_view(x, index, dim);
  const View* const views[3] = {&out, &index, &xb};
  const int64_t dim_stride = x.ndim > 0 ? x.strides[dim] : 0;
  const int64_t* ix = static_cast<const int64_t*>(index.data);
  dispatch_all(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.data);
    const T* xs = static_cast<const T*>(x.data);
    for_each_row<3>(views, [&](int64_t n, const int64_t* off, const int64_t* st) {
      for (int64_t i = 0; i < n; ++i)
        o[off[0] + i * st[0]] = xs[off[2] + i * st[2] + ix[off[1] + i * st[1]] * dim_stride];
    });
  });
}

void CpuBackend::scatter_add(const View& out, int dim, const View& index, const View& src) {
  dispatch_all(out.dtype, [&](auto tag) { scatter_add_typed<typename decltype(tag)::type>(out, dim, index, src); });
}

}  // namespace petal::kernels
