// LayerNorm over the rows of a contiguous [rows, cols] matrix, forward and backward.
// Element types (kernels/backend.h, LayerNormDTypes): x/dx in TX, y/dy in TY, weight/bias and
// dweight/dbias in W: all equal, or autocast's mixed form (W = f32, TY 16-bit, TX = f32 or TY).
// Vector accesses move groups of kGroup = 16 bytes' worth of the narrowest of the three
// types (8 for any 16-bit operand): one 16-byte vector of that type, two of f32.
// Forward: one block per row (grid-stride over rows), block size fitted to cols. The row
// is staged once in dynamic shared memory in the accumulator type when it fits, then
// mean (block_reduce), variance of the centered values (block_reduce: two-pass, no
// cancellation) and y = (x - mean) * rstd * weight + bias are computed from the stage.
// Mean and rstd are saved in the statistics type (f64 for f64 inputs, else f32). Rows whose
// width is a multiple of 16 bytes' worth of elements, from aligned pointers, are read and
// written in 16-byte vectors (8 bf16/f16 elements per access); others elementwise.
// Backward (rows of aligned 16-byte vectors: one vector per thread, x and dy read once), with
// xhat = (x - mean) * rstd and g = dy * weight:
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))       (one block per row)
//   dweight = sum_rows dy * xhat, dbias = sum_rows dy
// The dx kernel also folds each block's rows into its own row of a [blocks, cols]
// accumulator-type buffer (each thread owns fixed columns, so no atomics; the sums stay in
// registers up to kMaxColsPerThread columns per thread and are written once); the two row
// sums share one block reduction; a second kernel sums the buffer over blocks per column in a
// fixed order (32 columns per block, 8 warps splitting the rows): deterministic.
#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

// Elements per vector group: 16 bytes of the narrowest operand type.
template <typename TX, typename TY, typename W>
constexpr int group_size() {
  constexpr size_t a = sizeof(TX) < sizeof(TY) ? sizeof(TX) : sizeof(TY);
  constexpr size_t m = a < sizeof(W) ? a : sizeof(W);
  return kVectorBytes / static_cast<int>(m);
}

// N consecutive elements at p (16-byte aligned) widened to A, in N / Vector<T>::kSize vector loads.
template <int N, typename A, typename T>
__device__ inline void load_group(const T* p, A (&out)[N]) {
  constexpr int kv = Vector<T>::kSize;
  static_assert(N % kv == 0, "a group is whole vectors");
PETAL_UNROLL
  for (int j = 0; j < N / kv; ++j) {
    const Vector<T> v = load_vector(p + j * kv);
PETAL_UNROLL
    for (int e = 0; e < kv; ++e) out[j * kv + e] = A(to_acc(v.v[e]));
  }
}

// Stores N values rounded to T at p (16-byte aligned) in N / Vector<T>::kSize vector stores.
template <int N, typename T, typename A>
__device__ inline void store_group(T* p, const A (&in)[N]) {
  constexpr int kv = Vector<T>::kSize;
  static_assert(N % kv == 0, "a group is whole vectors");
PETAL_UNROLL
  for (int j = 0; j < N / kv; ++j) {
    Vector<T> v;
PETAL_UNROLL
    for (int e = 0; e < kv; ++e) v.v[e] = from_acc<T>(in[j * kv + e]);
    store_vector(p + j * kv, v);
  }
}

constexpr size_t kMaxStagedRowBytes = 32 * 1024;
// Blocks of the backward dx kernel (each owns one row of the partial-sum buffer).
constexpr int64_t kMaxBackwardBlocks = 512;

// vec: the row is moved in groups of kGroup elements (16-byte vector accesses); the host sets it
// only when the row is staged, cols is a multiple of kGroup and x, y, weight and bias are 16-byte
// aligned (so every row start is), else the scalar loops run.
template <typename TX, typename TY, typename W, typename A>
static __global__ void layer_norm_forward_kernel(TY* y, A* mean_out, A* rstd_out, const TX* x, const W* weight,
                                                 const W* bias, int64_t rows, int64_t cols, A eps, bool staged,
                                                 bool vec) {
  PETAL_DYNAMIC_SHARED(A, row_cache);
  PETAL_SHARED(A, scratch, [kWarpSize]);
  constexpr int kVec = group_size<TX, TY, W>();
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const TX* xr = x + r * cols;
    A s = A(0);
    if (vec) {
      for (int64_t c = threadIdx.x; c < cols / kVec; c += blockDim.x) {
        A v[kVec];
        load_group<kVec>(xr + c * kVec, v);
PETAL_UNROLL
        for (int e = 0; e < kVec; ++e) {
          row_cache[c * kVec + e] = v[e];
          s += v[e];
        }
      }
    } else {
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        const A v = to_acc(xr[i]);
        if (staged) row_cache[i] = v;
        s += v;
      }
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
    TY* yr = y + r * cols;
    if (vec) {
      for (int64_t c = threadIdx.x; c < cols / kVec; c += blockDim.x) {
        A w[kVec] = {}, b[kVec] = {}, o[kVec];
        if (weight) load_group<kVec>(weight + c * kVec, w);
        if (bias) load_group<kVec>(bias + c * kVec, b);
PETAL_UNROLL
        for (int e = 0; e < kVec; ++e) {
          A v = (row_cache[c * kVec + e] - mu) * rs;
          if (weight) v *= w[e];
          if (bias) v += b[e];
          o[e] = v;
        }
        store_group<kVec>(yr + c * kVec, o);
      }
    } else {
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        A o = ((staged ? row_cache[i] : A(to_acc(xr[i]))) - mu) * rs;
        if (weight) o *= A(to_acc(weight[i]));
        if (bias) o += A(to_acc(bias[i]));
        yr[i] = from_acc<TY>(o);
      }
    }
  }
}

// The two row sums of the backward, reduced together (one block_reduce instead of two).
template <typename A>
struct SumPair {
  A g, gx;
};
template <typename A>
__device__ inline SumPair<A> shuffle_xor(SumPair<A> v, int lane_mask) {
  return SumPair<A>{::petal::kernels::PETAL_CUDA_NS::shuffle_xor(v.g, lane_mask),
                    ::petal::kernels::PETAL_CUDA_NS::shuffle_xor(v.gx, lane_mask)};
}
struct PairSumOp {
  template <typename A>
  __device__ SumPair<A> operator()(SumPair<A> a, SumPair<A> b) const {
    return SumPair<A>{a.g + b.g, a.gx + b.gx};
  }
};

/// Columns each thread keeps in registers in the backward (cols <= kMaxColsPerThread * threads);
/// wider rows fold their partial sums in global memory instead.
constexpr int kMaxColsPerThread = 8;

// dx per row; when partial_w is non-null, also partial_w/b[blockIdx.x, i] = sum over this
// block's rows of dy * xhat and dy. Each thread owns columns i = threadIdx.x + k * blockDim.x:
// with kPerThread > 0 their partial sums live in registers for the whole row loop and are
// written once; kPerThread == 0 (very wide rows) accumulates them in the global buffer.
template <typename TX, typename TY, typename W, typename A, int kPerThread>
static __global__ void layer_norm_backward_dx_kernel(TX* dx, A* partial_w, A* partial_b, const TY* dy, const TX* x,
                                                     const A* mean, const A* rstd, const W* weight, int64_t rows,
                                                     int64_t cols, bool vec) {
  PETAL_SHARED(SumPair<A>, scratch, [kWarpSize]);
  constexpr int kRegs = kPerThread > 0 ? kPerThread : 1;
  A acc_w[kRegs], acc_b[kRegs];
PETAL_UNROLL
  for (int k = 0; k < kRegs; ++k) acc_w[k] = acc_b[k] = A(0);
  // Vector rows (the host sets vec only for this instantiation's kPerThread >= kGroup,
  // cols % kGroup == 0, cols / kGroup <= blockDim.x and x, dy, dx, weight 16-byte aligned): thread
  // t owns the kGroup columns of group t, reads x and dy once per row in 16-byte accesses (kept
  // in registers across the row's reduction) and writes dx the same way.
  constexpr int kGroup = group_size<TX, TY, W>();
  if constexpr (kPerThread >= kGroup) {
    if (vec) {
      constexpr int kVec = kGroup;
      const int64_t v = threadIdx.x;
      const bool own = v < cols / kVec;
      // Threads past the row's last group read group 0 and add nothing (no branch before the
      // block reduction: every thread reaches its barrier through the same call).
      const int64_t vr = own ? v : 0;
      // The weights of this thread's columns, once (1 without weight: g = dy exactly).
      A wv[kVec];
PETAL_UNROLL
      for (int e = 0; e < kVec; ++e) wv[e] = A(1);
      if (weight) load_group<kVec>(weight + vr * kVec, wv);
      for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const A m = mean[r], k = rstd[r];
        A xh[kVec], d[kVec], g[kVec];
        load_group<kVec>(x + r * cols + vr * kVec, xh);
        load_group<kVec>(dy + r * cols + vr * kVec, d);
        SumPair<A> s{A(0), A(0)};
PETAL_UNROLL
        for (int e = 0; e < kVec; ++e) {
          xh[e] = (xh[e] - m) * k;
          g[e] = d[e] * wv[e];
          s.g += g[e];
          s.gx += g[e] * xh[e];
        }
        s.g = own ? s.g : A(0);  // a select (an inf/NaN in group 0 must not leak in)
        s.gx = own ? s.gx : A(0);
        s = block_reduce(s, PairSumOp(), scratch);
        const A mg = s.g / A(cols), mgx = s.gx / A(cols);
        A o[kVec];
PETAL_UNROLL
        for (int e = 0; e < kVec; ++e) {
          o[e] = k * (g[e] - mg - xh[e] * mgx);
          acc_w[e] += d[e] * xh[e];
          acc_b[e] += d[e];
        }
        if (own) store_group<kVec>(dx + r * cols + v * kVec, o);
      }
      if (partial_w && own) {
PETAL_UNROLL
        for (int e = 0; e < kVec; ++e) {
          partial_w[blockIdx.x * cols + v * kVec + e] = acc_w[e];
          partial_b[blockIdx.x * cols + v * kVec + e] = acc_b[e];
        }
      }
      return;
    }
  }
  if (kPerThread == 0 && partial_w)
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      partial_w[blockIdx.x * cols + i] = A(0);
      partial_b[blockIdx.x * cols + i] = A(0);
    }
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const TX* xr = x + r * cols;
    const TY* dyr = dy + r * cols;
    const A m = mean[r], k = rstd[r];
    SumPair<A> s{A(0), A(0)};
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const A xh = (A(to_acc(xr[i])) - m) * k;
      A g = to_acc(dyr[i]);
      if (weight) g *= A(to_acc(weight[i]));
      s.g += g;
      s.gx += g * xh;
    }
    s = block_reduce(s, PairSumOp(), scratch);
    const A mg = s.g / A(cols), mgx = s.gx / A(cols);
    TX* dxr = dx + r * cols;
    if constexpr (kPerThread > 0) {
PETAL_UNROLL
      for (int c = 0; c < kPerThread; ++c) {
        const int64_t i = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
        if (i >= cols) break;
        const A xh = (A(to_acc(xr[i])) - m) * k;
        const A d = to_acc(dyr[i]);
        const A g = weight ? d * A(to_acc(weight[i])) : d;
        dxr[i] = from_acc<TX>(k * (g - mg - xh * mgx));
        acc_w[c] += d * xh;
        acc_b[c] += d;
      }
    } else {
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        const A xh = (A(to_acc(xr[i])) - m) * k;
        const A d = to_acc(dyr[i]);
        const A g = weight ? d * A(to_acc(weight[i])) : d;
        dxr[i] = from_acc<TX>(k * (g - mg - xh * mgx));
        if (partial_w) {
          partial_w[blockIdx.x * cols + i] += d * xh;
          partial_b[blockIdx.x * cols + i] += d;
        }
      }
    }
  }
  if constexpr (kPerThread > 0) {
    if (partial_w) {
PETAL_UNROLL
      for (int c = 0; c < kPerThread; ++c) {
        const int64_t i = threadIdx.x + static_cast<int64_t>(c) * blockDim.x;
        if (i >= cols) break;
        partial_w[blockIdx.x * cols + i] = acc_w[c];
        partial_b[blockIdx.x * cols + i] = acc_b[c];
      }
    }
  }
}

/// The parameter-gradient pass: blocks of kParamWarps warps, each block owning 32 columns
/// (a warp's loads coalesce); the warps split the partial-sum rows, then warp 0 adds the
/// warps' sums in warp order (deterministic).
constexpr int kParamWarps = 8;

// dweight[i] / dbias[i] = sum over the `parts` rows of the partial buffers.
template <typename W, typename A>
static __global__ void layer_norm_backward_params_kernel(W* dweight, W* dbias, const A* partial_w,
                                                         const A* partial_b, int64_t parts, int64_t cols) {
  PETAL_SHARED(A, sum_w, [kParamWarps][kWarpSize]);
  PETAL_SHARED(A, sum_b, [kParamWarps][kWarpSize]);
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize, warp = static_cast<int>(threadIdx.x) / kWarpSize;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kWarpSize; base < cols;
       base += static_cast<int64_t>(gridDim.x) * kWarpSize) {
    const int64_t i = base + lane;
    A sw = A(0), sb = A(0);
    if (i < cols)
      for (int64_t p = warp; p < parts; p += kParamWarps) {
        sw += partial_w[p * cols + i];
        sb += partial_b[p * cols + i];
      }
    sum_w[warp][lane] = sw;
    sum_b[warp][lane] = sb;
    __syncthreads();
    if (warp == 0 && i < cols) {
      A tw = A(0), tb = A(0);
      for (int w = 0; w < kParamWarps; ++w) {
        tw += sum_w[w][lane];
        tb += sum_b[w][lane];
      }
      if (dweight) dweight[i] = from_acc<W>(tw);
      if (dbias) dbias[i] = from_acc<W>(tb);
    }
    __syncthreads();  // sum_w/sum_b are rewritten by the next tile
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

// f(TypeTag<TX>, TypeTag<TY>, TypeTag<W>) for the combinations of LayerNormDTypes (core sends no
// others): all equal, or W = f32 with TY 16-bit and TX = f32 or TY.
template <typename F>
void dispatch_layer_norm(const LayerNormDTypes& t, F&& f) {
  if (t.uniform()) {
    dispatch_floating(t.x, [&](auto tag) { f(tag, tag, tag); });
    return;
  }
  PETAL_CHECK(t.param == DType::f32 && (t.y == DType::bf16 || t.y == DType::f16) &&
                  (t.x == DType::f32 || t.x == t.y),
              "cuda layer_norm: unsupported dtypes x ", dtype_name(t.x), ", y ", dtype_name(t.y), ", params ",
              dtype_name(t.param));
  auto with_y = [&](auto yt) {
    if (t.x == DType::f32)
      f(TypeTag<float>{}, yt, TypeTag<float>{});
    else
      f(yt, yt, TypeTag<float>{});
  };
  if (t.y == DType::bf16)
    with_y(TypeTag<bf16>{});
  else
    with_y(TypeTag<f16>{});
}

}  // namespace

void CudaBackend::layer_norm_forward(void* y, void* mean, void* rstd, const void* x, const void* weight,
                                     const void* bias, LayerNormDTypes dtypes, int64_t rows, int64_t cols,
                                     double eps) {
  if (rows == 0 || cols == 0) return;
  Stream stream = activate();
  dispatch_layer_norm(dtypes, [&](auto xt, auto yt, auto wt) {
    using TX = typename decltype(xt)::type;
    using TY = typename decltype(yt)::type;
    using W = typename decltype(wt)::type;
    using A = acc_t<TX>;
    const size_t row_bytes = static_cast<size_t>(cols) * sizeof(A);
    const bool staged = row_bytes <= kMaxStagedRowBytes;
    const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(rows, 65535));
    // 16-byte accesses when every row starts aligned; a misaligned view or a ragged width
    // (cols % kGroup != 0) takes the scalar loops.
    constexpr int kGroup = group_size<TX, TY, W>();
    const bool vec = staged && cols % kGroup == 0 &&
                     vector_aligned({x, y, weight != nullptr ? weight : x, bias != nullptr ? bias : x});
    PETAL_LAUNCH((layer_norm_forward_kernel<TX, TY, W, A>), blocks, threads_for(cols), staged ? row_bytes : 0,
                 stream, static_cast<TY*>(y), static_cast<A*>(mean), static_cast<A*>(rstd),
                 static_cast<const TX*>(x), static_cast<const W*>(weight), static_cast<const W*>(bias), rows, cols,
                 static_cast<A>(eps), staged, vec);
  });
}

void CudaBackend::layer_norm_backward(void* dx, void* dweight, void* dbias, const void* dy, const void* x,
                                      const void* mean, const void* rstd, const void* weight,
                                      LayerNormDTypes dtypes, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  Stream stream = activate();
  dispatch_layer_norm(dtypes, [&](auto xt, auto yt, auto wt) {
    using TX = typename decltype(xt)::type;
    using TY = typename decltype(yt)::type;
    using W = typename decltype(wt)::type;
    using A = acc_t<TX>;
    const bool param_grads = dweight != nullptr || dbias != nullptr;
    const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(rows, kMaxBackwardBlocks));
    const size_t part_bytes = static_cast<size_t>(blocks * cols) * sizeof(A);
    Scratch partial(*this, param_grads ? 2 * part_bytes : 0);
    A* partial_w = param_grads ? static_cast<A*>(partial.get()) : nullptr;
    A* partial_b = param_grads ? partial_w + blocks * cols : nullptr;
    // Vector rows: one group of kGroup columns per thread (x, dy read once per row).
    constexpr int kVec = group_size<TX, TY, W>();
    const bool vec = cols % kVec == 0 && cols / kVec <= 1024 && vector_aligned({x, dy, dx, weight ? weight : x});
    const int threads = vec ? static_cast<int>((cols / kVec + kWarpSize - 1) / kWarpSize * kWarpSize)
                            : threads_for(cols);
    const int64_t per_thread = vec ? kMaxColsPerThread : (cols + threads - 1) / threads;
// One launch per register-tile width (the kernel's name stays in the launch for the sim's
// list of launched kernels).
#define PETAL_LAYER_NORM_DX(K)                                                                                 \
  PETAL_LAUNCH((layer_norm_backward_dx_kernel<TX, TY, W, A, K>), static_cast<unsigned>(blocks), threads, 0,    \
               stream, static_cast<TX*>(dx), partial_w, partial_b, static_cast<const TY*>(dy),                 \
               static_cast<const TX*>(x), static_cast<const A*>(mean), static_cast<const A*>(rstd),            \
               static_cast<const W*>(weight), rows, cols, vec)
    if (rows > 0 || param_grads) {
      if (per_thread <= 1)
        PETAL_LAYER_NORM_DX(1);
      else if (per_thread <= 2)
        PETAL_LAYER_NORM_DX(2);
      else if (per_thread <= 4)
        PETAL_LAYER_NORM_DX(4);
      else if (per_thread <= kMaxColsPerThread)
        PETAL_LAYER_NORM_DX(kMaxColsPerThread);
      else
        PETAL_LAYER_NORM_DX(0);
    }
#undef PETAL_LAYER_NORM_DX
    if (param_grads) {
      const unsigned param_blocks =
          static_cast<unsigned>(std::min<int64_t>((cols + kWarpSize - 1) / kWarpSize, kMaxGridBlocks));
      PETAL_LAUNCH((layer_norm_backward_params_kernel<W, A>), param_blocks, kParamWarps * kWarpSize, 0, stream,
                   static_cast<W*>(dweight), static_cast<W*>(dbias), static_cast<const A*>(partial_w),
                   static_cast<const A*>(partial_b), blocks, cols);
    }
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
