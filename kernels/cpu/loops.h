// CPU loop machinery shared by the CPU kernels: dtype dispatch to C++ element types
// (bf16/f16 as 16-bit storage computed in float), and an N-ary strided loop that
// coalesces dimensions, runs the innermost dimension as a tight loop (unit-stride
// fast path the compiler vectorizes) and splits rows over OpenMP threads when large.
#pragma once
#include <omp.h>

#include <algorithm>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <petal/dtype.h>

#include "kernels/backend.h"

namespace petal::kernels::cpu {

/// 16-bit float storage types for the CPU (arithmetic through float).
struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

template <typename T>
struct Acc {
  using type = T;
};
template <>
struct Acc<float> {
  using type = float;
};
template <>
struct Acc<bf16_t> {
  using type = float;
};
template <>
struct Acc<f16_t> {
  using type = float;
};

template <typename T>
inline typename Acc<T>::type load(T v) {
  return v;
}
inline float load(bf16_t v) { return bf16_bits_to_float(v.bits); }
inline float load(f16_t v) { return f16_bits_to_float(v.bits); }

template <typename T, typename V>
inline T store(V v) {
  if constexpr (std::is_same_v<T, bf16_t>) {
    return bf16_t{float_to_bf16_bits(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<T, f16_t>) {
    return f16_t{float_to_f16_bits(static_cast<float>(v))};
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != V(0);
  } else {
    return static_cast<T>(v);
  }
}

template <typename T>
struct TypeTag {
  using type = T;
};

/// Calls f(TypeTag<T>{}) with T the C++ type of dtype.
template <typename F>
void dispatch_all(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(TypeTag<float>{}); break;
    case DType::f64: f(TypeTag<double>{}); break;
    case DType::bf16: f(TypeTag<bf16_t>{}); break;
    case DType::f16: f(TypeTag<f16_t>{}); break;
    case DType::i32: f(TypeTag<int32_t>{}); break;
    case DType::i64: f(TypeTag<int64_t>{}); break;
    case DType::u8: f(TypeTag<uint8_t>{}); break;
    case DType::b8: f(TypeTag<bool>{}); break;
  }
}

/// Floating dtypes only (f32, f64, bf16, f16).
template <typename F>
void dispatch_floating(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(TypeTag<float>{}); break;
    case DType::f64: f(TypeTag<double>{}); break;
    case DType::bf16: f(TypeTag<bf16_t>{}); break;
    case DType::f16: f(TypeTag<f16_t>{}); break;
    default: break;
  }
}

/// Minimum elements per OpenMP thread before going parallel.
constexpr int64_t kParallelGrain = 32768;

/// Geometry of N views sharing one shape, with dims coalesced.
template <int N>
struct Strided {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];

  explicit Strided(const View* const (&views)[N]) {
    const View& v0 = *views[0];
    // Drop size-1 dims, then merge dim i into i+1 when every view is contiguous across them.
    for (int d = 0; d < v0.ndim; ++d) {
      if (v0.shape[d] == 1) continue;
      if (ndim > 0) {
        bool merge = true;
        for (int k = 0; k < N; ++k)
          if (strides[k][ndim - 1] != views[k]->strides[d] * v0.shape[d]) merge = false;
        if (merge) {
          shape[ndim - 1] *= v0.shape[d];
          for (int k = 0; k < N; ++k) strides[k][ndim - 1] = views[k]->strides[d];
          continue;
        }
      }
      shape[ndim] = v0.shape[d];
      for (int k = 0; k < N; ++k) strides[k][ndim] = views[k]->strides[d];
      ++ndim;
    }
    if (ndim == 0) {
      ndim = 1;
      shape[0] = 1;
      for (int k = 0; k < N; ++k) strides[k][0] = 1;
    }
  }
};

/// Runs row(n, offsets, inner_strides) over every innermost row of the N views, where
/// offsets[k] is the element offset of the row's first element in view k.
template <int N, typename RowFn>
void for_each_row(const View* const (&views)[N], RowFn&& row) {
  Strided<N> g(views);
  const int last = g.ndim - 1;
  const int64_t inner = g.shape[last];
  int64_t rows = 1;
  for (int d = 0; d < last; ++d) rows *= g.shape[d];
  int64_t inner_strides[N];
  for (int k = 0; k < N; ++k) inner_strides[k] = g.strides[k][last];
  const int64_t total = rows * inner;
  auto run_range = [&](int64_t r0, int64_t r1) {
    int64_t idx[kMaxDims] = {};
    int64_t rem = r0;
    for (int d = last - 1; d >= 0; --d) {
      idx[d] = rem % g.shape[d];
      rem /= g.shape[d];
    }
    for (int64_t r = r0; r < r1; ++r) {
      int64_t off[N];
      for (int k = 0; k < N; ++k) {
        int64_t o = 0;
        for (int d = 0; d < last; ++d) o += idx[d] * g.strides[k][d];
        off[k] = o;
      }
      row(inner, off, inner_strides);
      for (int d = last - 1; d >= 0; --d) {
        if (++idx[d] < g.shape[d]) break;
        idx[d] = 0;
      }
    }
  };
  if (total >= 2 * kParallelGrain && rows > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel
    {
      int nt = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t chunk = (rows + nt - 1) / nt;
      int64_t r0 = std::min<int64_t>(rows, chunk * t), r1 = std::min<int64_t>(rows, r0 + chunk);
      if (r0 < r1) run_range(r0, r1);
    }
  } else if (total >= 2 * kParallelGrain && rows == 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
    // One long row: split it.
#pragma omp parallel
    {
      int nt = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t chunk = (inner + nt - 1) / nt;
      int64_t i0 = std::min<int64_t>(inner, chunk * t), i1 = std::min<int64_t>(inner, i0 + chunk);
      if (i0 < i1) {
        int64_t off[N];
        for (int k = 0; k < N; ++k) off[k] = i0 * inner_strides[k];
        row(i1 - i0, off, inner_strides);
      }
    }
  } else {
    run_range(0, rows);
  }
}

/// Parallel for over [0, n) in chunks (OpenMP when n is large).
template <typename F>
void parallel_for(int64_t n, int64_t grain, F&& f) {
  if (n >= 2 * grain && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel
    {
      int nt = omp_get_num_threads(), t = omp_get_thread_num();
      int64_t chunk = (n + nt - 1) / nt;
      int64_t b = std::min<int64_t>(n, chunk * t), e = std::min<int64_t>(n, b + chunk);
      if (b < e) f(b, e);
    }
  } else if (n > 0) {
    f(0, n);
  }
}

}  // namespace petal::kernels::cpu
