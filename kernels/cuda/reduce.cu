// Reductions: Sum / Max / Min / ArgMax / ArgMin over the trailing `reduced_dims` dims of a
// strided view into a contiguous output (one element per kept position).
//
// The kept and the reduced dims are each coalesced (size-1 dims dropped, contiguous
// neighbours merged; linear order preserved), then one of two schedules runs (each split
// across blocks when it alone would leave the GPU idle; see the split kernels):
//  - block per output: the threads of a block stride over the reduced range and combine
//    with block_reduce (long reductions: rows of a matrix, whole tensors);
//  - thread per output: each thread folds its own reduced range sequentially (short
//    reductions, and column reductions where adjacent outputs are adjacent in memory, so
//    the loads of a warp coalesce).
// Accumulators: float for f32/bf16/f16, double for f64; integer sums wrap in uint64 and
// are stored through int64 (core gives them an int64 output), integer max/min run in int64.
// Max/Min propagate NaN; ArgMax/ArgMin return the first NaN or the first extremum, like the
// CPU backend and PyTorch: the (value, index) combine is a total order with ties broken by
// the smaller index, so the tree order of the reduction cannot change the answer.
#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

template <typename T>
constexpr bool kFloatElem = std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16> ||
                            std::is_same_v<T, f16>;

template <ReduceOp Op, typename T>
using reduce_acc_t = std::conditional_t<kFloatElem<T>, acc_t<T>, std::conditional_t<Op == ReduceOp::Sum, uint64_t, int64_t>>;

// The reduction of one op: its state, identity, how an element enters it and how two
// states combine (associative and commutative).
template <ReduceOp Op, typename A>
struct Reducer;

template <typename A>
struct Reducer<ReduceOp::Sum, A> {
  using State = A;
  __device__ static State identity() { return A(0); }
  __device__ static State make(A v, int64_t) { return v; }
  __device__ static State combine(State a, State b) { return A(a + b); }
};

template <typename A>
struct Reducer<ReduceOp::Max, A> {
  using State = A;
  __device__ static State identity() {
    if constexpr (std::is_floating_point_v<A>) return -std::numeric_limits<A>::infinity();
    return std::numeric_limits<A>::lowest();
  }
  __device__ static State make(A v, int64_t) { return v; }
  __device__ static State combine(State a, State b) { return MaxOp()(a, b); }
};

template <typename A>
struct Reducer<ReduceOp::Min, A> {
  using State = A;
  __device__ static State identity() {
    if constexpr (std::is_floating_point_v<A>) return std::numeric_limits<A>::infinity();
    return std::numeric_limits<A>::max();
  }
  __device__ static State make(A v, int64_t) { return v; }
  __device__ static State combine(State a, State b) { return MinOp()(a, b); }
};

template <bool kMax, typename A>
struct ArgReducer {
  using State = ValueIndex<A>;
  __device__ static State identity() { return State{A(0), -1}; }  // index -1: no element
  __device__ static State make(A v, int64_t i) { return State{v, i}; }
  __device__ static State combine(State a, State b) {
    if (a.index < 0) return b;
    if (b.index < 0) return a;
    const bool a_nan = dmath::isnan(a.value), b_nan = dmath::isnan(b.value);
    if (a_nan || b_nan) {
      if (a_nan && b_nan) return a.index < b.index ? a : b;
      return a_nan ? a : b;
    }
    if (a.value == b.value) return a.index < b.index ? a : b;
    if constexpr (kMax) {
      return a.value > b.value ? a : b;
    } else {
      return a.value < b.value ? a : b;
    }
  }
};
template <typename A>
struct Reducer<ReduceOp::ArgMax, A> : ArgReducer<true, A> {};
template <typename A>
struct Reducer<ReduceOp::ArgMin, A> : ArgReducer<false, A> {};

template <ReduceOp Op>
constexpr bool kIsArg = Op == ReduceOp::ArgMax || Op == ReduceOp::ArgMin;

template <ReduceOp Op, typename O, typename State>
__device__ inline void write_result(O* out, int64_t o, const State& s) {
  if constexpr (kIsArg<Op>) {
    out[o] = s.index < 0 ? 0 : s.index;
  } else if constexpr (std::is_same_v<State, uint64_t>) {
    out[o] = from_acc<O>(static_cast<int64_t>(s));  // wrapped integer sum
  } else {
    out[o] = from_acc<O>(s);
  }
}

// One block per output (grid-stride over outputs); blockDim.x is a multiple of 32.
template <ReduceOp Op, typename T, typename A, typename O>
static __global__ void reduce_block_kernel(OffsetCalc<1> kept, OffsetCalc<1> red, int64_t outputs, int64_t R,
                                           const T* in, O* out) {
  using R_ = Reducer<Op, A>;
  using State = typename R_::State;
  PETAL_SHARED(State, scratch, [kWarpSize]);
  for (int64_t o = blockIdx.x; o < outputs; o += gridDim.x) {
    int64_t base[1];
    kept.get(o, base);
    State s = R_::identity();
    for (int64_t r = threadIdx.x; r < R; r += blockDim.x) {
      int64_t off[1];
      red.get(r, off);
      s = R_::combine(s, R_::make(static_cast<A>(to_acc(in[base[0] + off[0]])), r));
    }
    s = block_reduce(s, [](State a, State b) { return R_::combine(a, b); }, scratch);
    if (threadIdx.x == 0) write_result<Op>(out, o, s);
  }
}

// One thread per output, folding its reduced range in order.
template <ReduceOp Op, typename T, typename A, typename O>
static __global__ void reduce_thread_kernel(OffsetCalc<1> kept, OffsetCalc<1> red, int64_t outputs, int64_t R,
                                            const T* in, O* out) {
  using R_ = Reducer<Op, A>;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < outputs; o += int64_t(gridDim.x) * blockDim.x) {
    int64_t base[1];
    kept.get(o, base);
    typename R_::State s = R_::identity();
    for (int64_t r = 0; r < R; ++r) {
      int64_t off[1];
      red.get(r, off);
      s = R_::combine(s, R_::make(static_cast<A>(to_acc(in[base[0] + off[0]])), r));
    }
    write_result<Op>(out, o, s);
  }
}

// Split schedules, for reductions that would leave the GPU idle (few outputs, or column
// reductions with few columns): the reduced range is cut into `splits` equal chunks, blockIdx.y
// picks the chunk, and each chunk's State goes to partial[chunk * outputs + o]; then
// reduce_finalize_kernel folds the chunks of each output in chunk order, so the result does
// not depend on scheduling (deterministic, run to run).
template <ReduceOp Op, typename T, typename A, typename State>
static __global__ void reduce_thread_split_kernel(OffsetCalc<1> kept, OffsetCalc<1> red, int64_t outputs, int64_t R,
                                                  int64_t chunk, const T* in, State* partial) {
  using R_ = Reducer<Op, A>;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t r1 = r0 + chunk < R ? r0 + chunk : R;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < outputs; o += int64_t(gridDim.x) * blockDim.x) {
    int64_t base[1];
    kept.get(o, base);
    State st = R_::identity();
    for (int64_t r = r0; r < r1; ++r) {
      int64_t off[1];
      red.get(r, off);
      st = R_::combine(st, R_::make(static_cast<A>(to_acc(in[base[0] + off[0]])), r));
    }
    partial[blockIdx.y * outputs + o] = st;
  }
}

template <ReduceOp Op, typename T, typename A, typename State>
static __global__ void reduce_block_split_kernel(OffsetCalc<1> kept, OffsetCalc<1> red, int64_t outputs, int64_t R,
                                                 int64_t chunk, const T* in, State* partial) {
  using R_ = Reducer<Op, A>;
  PETAL_SHARED(State, scratch, [kWarpSize]);
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * chunk;
  const int64_t r1 = r0 + chunk < R ? r0 + chunk : R;
  for (int64_t o = blockIdx.x; o < outputs; o += gridDim.x) {
    int64_t base[1];
    kept.get(o, base);
    State st = R_::identity();
    for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) {
      int64_t off[1];
      red.get(r, off);
      st = R_::combine(st, R_::make(static_cast<A>(to_acc(in[base[0] + off[0]])), r));
    }
    st = block_reduce(st, [](State a, State b) { return R_::combine(a, b); }, scratch);
    if (threadIdx.x == 0) partial[blockIdx.y * outputs + o] = st;
  }
}

template <ReduceOp Op, typename A, typename O, typename State>
static __global__ void reduce_finalize_kernel(const State* partial, int64_t outputs, int splits, O* out) {
  using R_ = Reducer<Op, A>;
  for (int64_t o = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; o < outputs; o += int64_t(gridDim.x) * blockDim.x) {
    State st = partial[o];
    for (int c = 1; c < splits; ++c) st = R_::combine(st, partial[c * outputs + o]);
    write_result<Op>(out, o, st);
  }
}

/// Blocks a reduction should put to work: a few waves over the SMs of the largest target
/// (132 on an H100/H200).
constexpr int64_t kTargetBlocks = 512;
/// Fewest reduced elements per thread and per block (a chunk) for a split to pay.
constexpr int64_t kMinChunkPerThread = 64;
constexpr int64_t kMinChunkPerBlock = 4096;

/// A split of the reduced range into `used` chunks of `chunk` elements (the last may be
/// shorter), with device scratch for the chunks' partial states, freed in stream order.
struct Split {
  int64_t chunk;
  int used;
  void* p;
  Split(int64_t R, int64_t splits, int64_t outputs, size_t state_bytes)
      : chunk((R + splits - 1) / splits),
        used(static_cast<int>((R + chunk - 1) / chunk)),
        p(rt_malloc(static_cast<size_t>(used) * static_cast<size_t>(outputs) * state_bytes)) {}
  ~Split() { rt_free(p); }
  Split(const Split&) = delete;
  Split& operator=(const Split&) = delete;
  template <typename State>
  State* partial() const {
    return static_cast<State*>(p);
  }
};

// Coalesced group of dims [begin, end) of v as a one-view offset calculator.
OffsetCalc<1> group(const View& v, int begin, int end) {
  View g;
  g.ndim = 0;
  for (int d = begin; d < end; ++d) {
    g.shape[g.ndim] = v.shape[d];
    g.strides[g.ndim] = v.strides[d];
    ++g.ndim;
  }
  const View* views[1] = {&g};
  OffsetCalc<1> c = make_offset_calc(views);
  if (c.ndim == 1 && c.shape[0] == 1) c.strides[0][0] = 0;
  return c;
}

template <ReduceOp Op, typename T, typename O>
static void launch_reduce(const View& out, const View& in, int reduced_dims, Stream stream) {
  using A = reduce_acc_t<Op, T>;
  const int nkept = in.ndim - reduced_dims;
  const OffsetCalc<1> kept = group(in, 0, nkept), red = group(in, nkept, in.ndim);
  int64_t outputs = 1, R = 1;
  for (int d = 0; d < kept.ndim; ++d) outputs *= kept.shape[d];
  for (int d = 0; d < red.ndim; ++d) R *= red.shape[d];
  if (outputs == 0) return;
  const T* x = static_cast<const T*>(in.data);
  O* o = static_cast<O*>(out.data);
  const bool unit_kept = kept.strides[0][kept.ndim - 1] == 1 && kept.shape[kept.ndim - 1] >= 8;
  const bool unit_red = red.strides[0][red.ndim - 1] == 1 || red.shape[red.ndim - 1] == 1;
  // Column reductions (adjacent outputs adjacent in memory, reduced dim strided) go thread per
  // output from one warp's worth of columns on: a warp's loads coalesce, and the split
  // schedule below fills the GPU however few columns there are.
  const bool per_thread = R <= 32 || (unit_kept && !unit_red && outputs >= 32);
  using State = typename Reducer<Op, A>::State;
  if (per_thread) {
    const unsigned blocks = grid_for(outputs);
    const int64_t splits =
        std::min<int64_t>({(kTargetBlocks + blocks - 1) / blocks, R / kMinChunkPerThread, 65535});
    if (splits >= 2) {
      const Split split(R, splits, outputs, sizeof(State));
      PETAL_LAUNCH((reduce_thread_split_kernel<Op, T, A, State>), dim3(blocks, static_cast<unsigned>(split.used)),
                   kBlockSize, 0, stream, kept, red, outputs, R, split.chunk, x, split.partial<State>());
      PETAL_LAUNCH((reduce_finalize_kernel<Op, A, O, State>), grid_for(outputs), kBlockSize, 0, stream,
                   static_cast<const State*>(split.partial<State>()), outputs, split.used, o);
      return;
    }
    PETAL_LAUNCH((reduce_thread_kernel<Op, T, A, O>), blocks, kBlockSize, 0, stream, kept, red, outputs, R, x, o);
  } else {
    const int threads = R >= 2048 ? 256 : (R >= 512 ? 128 : 64);
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(outputs, 65535));
    const int64_t splits =
        std::min<int64_t>({(kTargetBlocks + blocks - 1) / blocks, R / kMinChunkPerBlock, 65535});
    if (splits >= 2) {
      const Split split(R, splits, outputs, sizeof(State));
      PETAL_LAUNCH((reduce_block_split_kernel<Op, T, A, State>), dim3(blocks, static_cast<unsigned>(split.used)),
                   threads, 0, stream, kept, red, outputs, R, split.chunk, x, split.partial<State>());
      PETAL_LAUNCH((reduce_finalize_kernel<Op, A, O, State>), grid_for(outputs), kBlockSize, 0, stream,
                   static_cast<const State*>(split.partial<State>()), outputs, split.used, o);
      return;
    }
    PETAL_LAUNCH((reduce_block_kernel<Op, T, A, O>), blocks, threads, 0, stream, kept, red, outputs, R, x, o);
  }
}

template <ReduceOp Op>
void reduce_op(const View& out, const View& in, int reduced_dims, Stream stream) {
  dispatch_all(in.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    // Output dtype (core/ops/reduce.cpp): int64 for arg ops and integer sums, else the input's.
    if constexpr (kIsArg<Op>) {
      launch_reduce<Op, T, int64_t>(out, in, reduced_dims, stream);
    } else if constexpr (kFloatElem<T>) {
      launch_reduce<Op, T, T>(out, in, reduced_dims, stream);
    } else if (out.dtype == DType::i64) {
      launch_reduce<Op, T, int64_t>(out, in, reduced_dims, stream);
    } else {
      launch_reduce<Op, T, T>(out, in, reduced_dims, stream);
    }
  });
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const View& out, const View& in, int reduced_dims) {
  Stream stream = activate();
  switch (op) {
    case ReduceOp::Sum: reduce_op<ReduceOp::Sum>(out, in, reduced_dims, stream); break;
    case ReduceOp::Max: reduce_op<ReduceOp::Max>(out, in, reduced_dims, stream); break;
    case ReduceOp::Min: reduce_op<ReduceOp::Min>(out, in, reduced_dims, stream); break;
    case ReduceOp::ArgMax: reduce_op<ReduceOp::ArgMax>(out, in, reduced_dims, stream); break;
    case ReduceOp::ArgMin: reduce_op<ReduceOp::ArgMin>(out, in, reduced_dims, stream); break;
  }
}

}  // namespace petal::kernels::PETAL_CUDA_NS
