// CPU reductions: Sum / Max / Min / ArgMax / ArgMin over the trailing `reduced_dims`
// dims of a strided view, into a contiguous output with one element per kept position.
//
// Algorithm: the kept dims and the reduced dims are each coalesced (size-1 dims dropped,
// contiguous neighbours merged), then one of three schedules runs:
//  - rows: each output reduces its own (strided) range; OpenMP over outputs. Floating sums
//    accumulate in double with pairwise blocks of 8 independent accumulators, so float32
//    sums of millions of elements stay far below 1e-5 normalized error.
//  - columns: when the innermost kept dim has unit stride and the reduction runs across
//    a strided dim (e.g. sum over dim 0 of a row-major matrix), a block of adjacent outputs
//    is updated together for every reduced element (vectorizable, cache friendly).
//  - split: few outputs with a long reduction; the reduced range is cut into per-thread
//    chunks whose partial results are combined in order (ties keep the first index).
// Integer and bool sums wrap like int64 (core gives them an int64 output); Max/Min
// propagate NaN and ArgMax/ArgMin return the first NaN or first extremum, like PyTorch.
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

// A group of coalesced dims (outer to inner); never empty (a lone size-1 dim if needed).
struct DimGroup {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t stride[kMaxDims];

  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= shape[d];
    return n;
  }
  // Element offset of the row-major linear index i.
  int64_t offset_of(int64_t i) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      off += (i % shape[d]) * stride[d];
      i /= shape[d];
    }
    return off;
  }
};

// Merging preserves the row-major order of the group, so linear indices (outputs, argmax
// positions) mean the same thing before and after.
DimGroup coalesce(const View& v, int begin, int end) {
  DimGroup g;
  for (int d = begin; d < end; ++d) {
    if (v.shape[d] == 1) continue;
    if (g.ndim > 0 && g.stride[g.ndim - 1] == v.strides[d] * v.shape[d]) {
      g.shape[g.ndim - 1] *= v.shape[d];
      g.stride[g.ndim - 1] = v.strides[d];
      continue;
    }
    g.shape[g.ndim] = v.shape[d];
    g.stride[g.ndim] = v.strides[d];
    ++g.ndim;
  }
  if (g.ndim == 0) {
    g.ndim = 1;
    g.shape[0] = 1;
    g.stride[0] = 0;
  }
  return g;
}

// Walks the offsets of a group's outer dims (all but the innermost) incrementally.
struct OuterWalker {
  const DimGroup& g;
  int64_t idx[kMaxDims] = {};
  int64_t offset = 0;

  OuterWalker(const DimGroup& group, int64_t outer_start) : g(group) {
    int last = g.ndim - 1;
    for (int d = last - 1; d >= 0; --d) {
      idx[d] = outer_start % g.shape[d];
      outer_start /= g.shape[d];
      offset += idx[d] * g.stride[d];
    }
  }
  void next() {
    for (int d = g.ndim - 2; d >= 0; --d) {
      offset += g.stride[d];
      if (++idx[d] < g.shape[d]) return;
      offset -= idx[d] * g.stride[d];
      idx[d] = 0;
    }
  }
};

template <typename T>
constexpr bool kIsFloat =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>;

// Accumulator: double for floating types; for integers uint64 for sums (wrap-around
// without signed-overflow UB) and int64 for comparisons.
template <ReduceOp Op, typename T>
using AccOf = std::conditional_t<kIsFloat<T>, double, std::conditional_t<Op == ReduceOp::Sum, uint64_t, int64_t>>;

template <typename A, typename T>
inline A to_acc(T v) {
  return static_cast<A>(load(v));
}

template <ReduceOp Op>
constexpr bool kIsMax = Op == ReduceOp::Max || Op == ReduceOp::ArgMax;

// True when v should replace cur (NaN wins over numbers; ties keep cur).
template <ReduceOp Op, typename A>
inline bool better(A v, A cur) {
  bool nan_wins = false;
  if constexpr (std::is_floating_point_v<A>) nan_wins = std::isnan(v) && !std::isnan(cur);
  if constexpr (kIsMax<Op>) {
    return v > cur || nan_wins;
  } else {
    return v < cur || nan_wins;
  }
}

template <typename A>
struct State {
  A val{};
  int64_t idx = -1;  // -1: no element seen yet (comparisons only)
};

// Pairwise sum of n elements at stride s: blocks of 8 independent accumulators, halves
// summed recursively, so the rounding error grows like log(n).
template <typename A, typename T>
A sum_run(const T* p, int64_t n, int64_t s) {
  constexpr int64_t kBlock = 1024;
  if (n > kBlock) {
    int64_t half = (n / 2 + 7) / 8 * 8;
    return sum_run<A>(p, half, s) + sum_run<A>(p + half * s, n - half, s);
  }
  A acc[8] = {};
  int64_t i = 0;
  if (s == 1) {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += to_acc<A>(p[i + j]);
  } else {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += to_acc<A>(p[(i + j) * s]);
  }
  A tail = 0;
  for (; i < n; ++i) tail += to_acc<A>(p[i * s]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// Folds n elements at stride s, the first having reduced index first_index, into st.
template <ReduceOp Op, typename A, typename T>
inline void fold_run(State<A>& st, const T* p, int64_t n, int64_t s, int64_t first_index) {
  if constexpr (Op == ReduceOp::Sum) {
    st.val += sum_run<A>(p, n, s);
  } else if constexpr ((Op == ReduceOp::Max || Op == ReduceOp::Min) && std::is_floating_point_v<A>) {
    // Values only: 8 independent lanes with branch-free selects (vectorizable); a NaN
    // anywhere makes the result NaN.
    if (n <= 0) return;
    A lane[8];
    for (int j = 0; j < 8; ++j) lane[j] = to_acc<A>(p[0]);
    bool nan = false;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) {
        A v = to_acc<A>(p[(i + j) * s]);
        lane[j] = Op == ReduceOp::Max ? (v > lane[j] ? v : lane[j]) : (v < lane[j] ? v : lane[j]);
        nan |= v != v;
      }
    for (; i < n; ++i) {
      A v = to_acc<A>(p[i * s]);
      lane[0] = Op == ReduceOp::Max ? (v > lane[0] ? v : lane[0]) : (v < lane[0] ? v : lane[0]);
      nan |= v != v;
    }
    A best = lane[0];
    for (int j = 1; j < 8; ++j)
      best = Op == ReduceOp::Max ? (lane[j] > best ? lane[j] : best) : (lane[j] < best ? lane[j] : best);
    if (nan) best = std::numeric_limits<A>::quiet_NaN();
    if (st.idx < 0 || better<Op>(best, st.val)) st.val = best;
    st.idx = 0;  // marks "seen"; values-only ops never report an index
  } else {
    int64_t i = 0;
    if (st.idx < 0 && n > 0) {
      st.val = to_acc<A>(p[0]);
      st.idx = first_index;
      i = 1;
    }
    A best = st.val;
    int64_t where = st.idx;
    for (; i < n; ++i) {
      A v = to_acc<A>(p[i * s]);
      if (better<Op>(v, best)) {
        best = v;
        where = first_index + i;
      }
    }
    st.val = best;
    st.idx = where;
  }
}

// Combines the state of a later range into the state of an earlier one.
template <ReduceOp Op, typename A>
inline void combine(State<A>& a, const State<A>& b) {
  if constexpr (Op == ReduceOp::Sum) {
    a.val += b.val;
  } else {
    if (b.idx >= 0 && (a.idx < 0 || better<Op>(b.val, a.val))) a = b;
  }
}

// Reduces the linear range [r0, r1) of the reduced group, starting from base.
template <ReduceOp Op, typename A, typename T>
State<A> reduce_range(const T* base, const DimGroup& r, int64_t r0, int64_t r1) {
  State<A> st;
  const int last = r.ndim - 1;
  const int64_t inner = r.shape[last], s = r.stride[last];
  int64_t outer = r0 / inner, j = r0 % inner;
  OuterWalker walk(r, outer);
  int64_t pos = r0;
  while (pos < r1) {
    int64_t n = std::min(inner - j, r1 - pos);
    fold_run<Op>(st, base + walk.offset + j * s, n, s, pos);
    pos += n;
    j = 0;
    walk.next();
  }
  return st;
}

template <typename A>
inline void store_value(const View& out, int64_t o, A v) {
  using V = std::conditional_t<std::is_same_v<A, uint64_t>, int64_t, A>;
  V value = static_cast<V>(v);
  dispatch_all(out.dtype, [&](auto tag) {
    using O = typename decltype(tag)::type;
    static_cast<O*>(out.data)[o] = store<O>(value);
  });
}

template <ReduceOp Op, typename A>
inline void write_out(const View& out, int64_t o, const State<A>& st) {
  if constexpr (Op == ReduceOp::ArgMax || Op == ReduceOp::ArgMin) {
    static_cast<int64_t*>(out.data)[o] = st.idx < 0 ? 0 : st.idx;
  } else {
    store_value(out, o, st.val);
  }
}

// Columns schedule: kept inner dim has unit stride; a block of up to kWidth adjacent
// outputs advances together over every reduced element.
template <ReduceOp Op, typename A, typename T>
void reduce_columns(const View& out, const T* in, const DimGroup& kept, const DimGroup& red) {
  constexpr int64_t kWidth = 256;
  const int klast = kept.ndim - 1;
  const int64_t kinner = kept.shape[klast];
  const int64_t kouter = kept.numel() / kinner;
  const int64_t blocks = (kinner + kWidth - 1) / kWidth;
  const int64_t R = red.numel();
  const int rlast = red.ndim - 1;
  const int64_t rinner = red.shape[rlast], rs = red.stride[rlast];
  const int64_t work_per_task = kWidth * R;
  parallel_for(kouter * blocks, std::max<int64_t>(1, kParallelGrain / work_per_task), [&](int64_t t0, int64_t t1) {
    A acc[kWidth];
    int64_t idx[kWidth];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t ko = t / blocks, b = t % blocks;
      const int64_t j0 = b * kWidth, w = std::min(kWidth, kinner - j0);
      const T* base = in + kept.offset_of(ko * kinner) + j0;  // innermost kept stride is 1
      for (int64_t j = 0; j < w; ++j) {
        acc[j] = Op == ReduceOp::Sum ? A(0) : to_acc<A>(base[j]);
        idx[j] = 0;
      }
      OuterWalker walk(red, 0);
      for (int64_t r = 0, start = Op == ReduceOp::Sum ? 0 : 1; r < R; r += rinner, walk.next()) {
        for (int64_t ri = (r == 0 ? start : 0); ri < rinner; ++ri) {
          const T* p = base + walk.offset + ri * rs;
          if constexpr (Op == ReduceOp::Sum) {
            for (int64_t j = 0; j < w; ++j) acc[j] += to_acc<A>(p[j]);
          } else {
            for (int64_t j = 0; j < w; ++j) {
              A v = to_acc<A>(p[j]);
              if (better<Op>(v, acc[j])) {
                acc[j] = v;
                idx[j] = r + ri;
              }
            }
          }
        }
      }
      const int64_t o0 = ko * kinner + j0;
      for (int64_t j = 0; j < w; ++j) write_out<Op>(out, o0 + j, State<A>{acc[j], idx[j]});
    }
  });
}

template <ReduceOp Op, typename T>
void reduce_typed(const View& out, const View& in, int reduced_dims) {
  using A = AccOf<Op, T>;
  const T* data = static_cast<const T*>(in.data);
  const int nkept = in.ndim - reduced_dims;
  DimGroup kept = coalesce(in, 0, nkept);
  DimGroup red = coalesce(in, nkept, in.ndim);
  const int64_t outputs = kept.numel(), R = red.numel();
  if (outputs == 0) return;
  if (R == 0) {  // only Sum reaches here (core rejects empty max/min/arg reductions)
    for (int64_t o = 0; o < outputs; ++o) write_out<Op>(out, o, State<A>{A(0), 0});
    return;
  }
  const int threads = omp_get_max_threads();
  const bool unit_kept = kept.stride[kept.ndim - 1] == 1 && kept.shape[kept.ndim - 1] >= 8;
  const bool unit_red = red.stride[red.ndim - 1] == 1 || red.shape[red.ndim - 1] == 1;
  if (unit_kept && !unit_red) {
    reduce_columns<Op, A>(out, data, kept, red);
    return;
  }
  if (outputs < threads && R >= 2 * kParallelGrain && !omp_in_parallel()) {
    // Split: per-thread partial states over one output's range, combined in order.
    for (int64_t o = 0; o < outputs; ++o) {
      const T* base = data + kept.offset_of(o);
      std::vector<State<A>> partial(static_cast<size_t>(threads));
#pragma omp parallel num_threads(threads)
      {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t chunk = (R + nt - 1) / nt;
        int64_t r0 = std::min<int64_t>(R, chunk * t), r1 = std::min<int64_t>(R, r0 + chunk);
        if (r0 < r1) partial[static_cast<size_t>(t)] = reduce_range<Op, A>(base, red, r0, r1);
      }
      State<A> st = partial[0];
      for (size_t t = 1; t < partial.size(); ++t) combine<Op>(st, partial[t]);
      write_out<Op>(out, o, st);
    }
    return;
  }
  parallel_for(outputs, std::max<int64_t>(1, kParallelGrain / R), [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) write_out<Op>(out, o, reduce_range<Op, A>(data + kept.offset_of(o), red, 0, R));
  });
}

template <ReduceOp Op>
void reduce_op(const View& out, const View& in, int reduced_dims) {
  dispatch_all(in.dtype, [&](auto tag) { reduce_typed<Op, typename decltype(tag)::type>(out, in, reduced_dims); });
}

}  // namespace

void CpuBackend::reduce(ReduceOp op, const View& out, const View& in, int reduced_dims) {
  switch (op) {
    case ReduceOp::Sum:
      reduce_op<ReduceOp::Sum>(out, in, reduced_dims);
      break;
    case ReduceOp::Max:
      reduce_op<ReduceOp::Max>(out, in, reduced_dims);
      break;
    case ReduceOp::Min:
      reduce_op<ReduceOp::Min>(out, in, reduced_dims);
      break;
    case ReduceOp::ArgMax:
      reduce_op<ReduceOp::ArgMax>(out, in, reduced_dims);
      break;
    case ReduceOp::ArgMin:
      reduce_op<ReduceOp::ArgMin>(out, in, reduced_dims);
      break;
  }
}

}  // namespace petal::kernels
