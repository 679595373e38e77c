// Shared machinery of the CUDA kernels. Every kernels/cuda/*.cu file is compiled twice:
// by nvcc for the GPU (namespace cuda_impl) and by the host compiler with
// PETAL_SIM_COMPILE for the SIMT simulator (namespace sim_impl, kernels/sim/). This
// header hides the difference: the one kernel-launch helper (PETAL_LAUNCH; no <<<>>>
// anywhere else), dtype dispatch to device element types and their fp32/fp64
// accumulators, strided offset calculators, the one vector-load helper, the one
// warp/block-reduction helper, and atomic accumulation for every dtype.
// Kernel code may only use what the simulator provides: the thread/block built-ins,
// __shared__, __syncthreads, __shfl_*_sync, ballot/any/all, atomics and math functions.
#pragma once

#ifdef PETAL_SIM_COMPILE
#include "kernels/sim/sim_cuda.h"
#else
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#endif
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include <petal/error.h>

#include "kernels/backend.h"
#include "kernels/cuda/runtime.h"

// Loop unrolling hint for nvcc (the host compiler decides on its own).
#ifdef PETAL_SIM_COMPILE
#define PETAL_UNROLL
#else
#define PETAL_UNROLL _Pragma("unroll")
#endif

#ifndef PETAL_SHARED
/// Static shared memory: PETAL_SHARED(float, tile, [32][33]) declares a __shared__ array (the
/// simulator's version poisons it at each block start, so unwritten reads are caught).
#define PETAL_SHARED(T, name, dims) __shared__ T name dims
#endif

#ifndef PETAL_DYNAMIC_SHARED
/// Dynamic shared memory of a launch as a T array (the simulator defines its own).
#define PETAL_DYNAMIC_SHARED(T, name)                       \
  extern __shared__ __align__(16) unsigned char petal_smem_raw[]; \
  T* name = reinterpret_cast<T*>(petal_smem_raw)
#endif

namespace petal::kernels::PETAL_CUDA_NS {

// ------------------------------------------------------------------ launching

#ifdef PETAL_SIM_COMPILE
using Stream = void*;  // the simulator runs every launch synchronously
#else
using Stream = cudaStream_t;
#endif

/// Threads per block for the elementwise-style kernels (modest so simulated tests stay fast).
constexpr int kBlockSize = 256;
constexpr int kWarpSize = 32;
/// Upper bound on blocks of a grid-stride launch (enough to fill any current GPU).
constexpr int64_t kMaxGridBlocks = 8192;

/// Blocks for a grid-stride loop over `work` items with `block` threads per block.
inline unsigned grid_for(int64_t work, int block = kBlockSize) {
  int64_t g = (work + block - 1) / block;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(g, kMaxGridBlocks)));
}

#ifdef PETAL_SIM_COMPILE
/// Records that the simulator launched the kernel named by PETAL_LAUNCH's text (backend.cu;
/// the list-of-kernels test compares these names with every __global__ in kernels/cuda).
void record_sim_launch(const char* name);
#endif

#ifndef PETAL_SIM_COMPILE
/// True when PETAL_CUDA_SYNC is set to a value other than 0 (read once).
inline bool sync_after_launch() {
  static const bool on = [] {
    const char* v = std::getenv("PETAL_CUDA_SYNC");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return on;
}
#endif

/// Launches kernel on grid x block with smem dynamic shared bytes on stream; a failed
/// launch throws petal::Error naming the kernel, file and line. max_threads is the kernel's
/// __launch_bounds__ (1024 without), checked by the simulator as the GPU would.
template <typename... KArgs, typename... Args>
inline void launch_kernel(const char* name, const char* file, int line, void (*kernel)(KArgs...),
                          unsigned max_threads, dim3 grid, dim3 block, size_t smem, Stream stream, Args&&... args) {
#ifdef PETAL_SIM_COMPILE
  (void)file;
  (void)line;
  (void)stream;
  record_sim_launch(name);
  ::petal::sim::launch_bounded(name, kernel, max_threads, grid, block, smem, std::forward<Args>(args)...);
#else
  (void)max_threads;
  kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    PETAL_FAIL("cuda: launch of kernel ", name, " (grid ", grid.x, "x", grid.y, "x", grid.z, ", block ", block.x, "x",
               block.y, "x", block.z, ", smem ", smem, ") failed: ", cudaGetErrorName(err), " (",
               cudaGetErrorString(err), ") at ", file, ":", line);
  // PETAL_CUDA_SYNC=1 (like CUDA_LAUNCH_BLOCKING): wait for every kernel, so an illegal
  // address or a trap is blamed on the kernel that made it, not on a later call.
  if (sync_after_launch()) {
    err = cudaStreamSynchronize(stream);
    if (err != cudaSuccess)
      PETAL_FAIL("cuda: kernel ", name, " (grid ", grid.x, "x", grid.y, "x", grid.z, ", block ", block.x, "x", block.y,
                 "x", block.z, ", smem ", smem, ") failed while running: ", cudaGetErrorName(err), " (",
                 cudaGetErrorString(err), "), launched at ", file, ":", line, " (PETAL_CUDA_SYNC=1)");
  }
#endif
}

/// PETAL_LAUNCH(kernel, grid, block, smem, stream, args...); a templated kernel with
/// several template arguments is written in parentheses: PETAL_LAUNCH((k<T, A>), ...).
#define PETAL_LAUNCH(kernel, grid, block, smem, stream, ...) \
  launch_kernel(#kernel, __FILE__, __LINE__, kernel, 1024u, grid, block, smem, stream, __VA_ARGS__)
/// PETAL_LAUNCH for a kernel declared with __launch_bounds__(max_threads): pass the same
/// constant that the declaration uses.
#define PETAL_LAUNCH_BOUNDED(kernel, max_threads, grid, block, smem, stream, ...) \
  launch_kernel(#kernel, __FILE__, __LINE__, kernel, max_threads, grid, block, smem, stream, __VA_ARGS__)

/// Lets kernel use `bytes` of dynamic shared memory above the default 48 KiB
/// (cudaFuncSetAttribute on the GPU; recorded and enforced by the simulator). Call before
/// the launch; every call is checked.
template <typename... KArgs>
inline void opt_in_dynamic_shared_memory(const char* name, void (*kernel)(KArgs...), size_t bytes) {
#ifdef PETAL_SIM_COMPILE
  ::petal::sim::opt_in_dynamic_shared_memory(name, kernel, bytes);
#else
  cudaError_t err = cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (err != cudaSuccess)
    PETAL_FAIL("cuda: cudaFuncSetAttribute(", name, ", MaxDynamicSharedMemorySize, ", bytes,
               ") failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
#endif
}

// ------------------------------------------------------------------ element types

using bf16 = __nv_bfloat16;
using f16 = __half;

template <typename T>
struct TypeTag {
  using type = T;
};

/// Accumulator (compute) type of an element type: float for f32/bf16/f16, double for
/// f64, the type itself for integers (as in the CPU backend).
template <typename T>
struct AccOf {
  using type = T;
};
template <>
struct AccOf<bf16> {
  using type = float;
};
template <>
struct AccOf<f16> {
  using type = float;
};
template <typename T>
using acc_t = typename AccOf<T>::type;

/// Calls f(TypeTag<T>{}) with T the device element type of dtype.
template <typename F>
void dispatch_all(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(TypeTag<float>{}); break;
    case DType::f64: f(TypeTag<double>{}); break;
    case DType::bf16: f(TypeTag<bf16>{}); break;
    case DType::f16: f(TypeTag<f16>{}); break;
    case DType::i32: f(TypeTag<int32_t>{}); break;
    case DType::i64: f(TypeTag<int64_t>{}); break;
    case DType::u8: f(TypeTag<uint8_t>{}); break;
    case DType::b8: f(TypeTag<bool>{}); break;
  }
}

/// Floating dtypes only (f32, f64, bf16, f16); others are ignored (core never sends them).
template <typename F>
void dispatch_floating(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: f(TypeTag<float>{}); break;
    case DType::f64: f(TypeTag<double>{}); break;
    case DType::bf16: f(TypeTag<bf16>{}); break;
    case DType::f16: f(TypeTag<f16>{}); break;
    default: break;
  }
}

/// Unsigned integer type of the given byte width, for kernels that only move bits.
template <size_t Bytes>
struct BitsOf;
template <>
struct BitsOf<1> {
  using type = uint8_t;
};
template <>
struct BitsOf<2> {
  using type = uint16_t;
};
template <>
struct BitsOf<4> {
  using type = uint32_t;
};
template <>
struct BitsOf<8> {
  using type = uint64_t;
};

/// Calls f(TypeTag<U>{}) with U the unsigned type as wide as one element of dtype.
template <typename F>
void dispatch_bits(DType dtype, F&& f) {
  switch (dtype_size(dtype)) {
    case 1: f(TypeTag<uint8_t>{}); break;
    case 2: f(TypeTag<uint16_t>{}); break;
    case 4: f(TypeTag<uint32_t>{}); break;
    default: f(TypeTag<uint64_t>{}); break;
  }
}

/// Element -> accumulator (widens bf16/f16 to float; identity otherwise).
template <typename T>
__host__ __device__ inline acc_t<T> to_acc(T v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return __bfloat162float(v);
  } else if constexpr (std::is_same_v<T, f16>) {
    return __half2float(v);
  } else {
    return v;
  }
}

/// Any arithmetic value -> element, with the CPU backend's rules: 16-bit floats round
/// through float (nearest even), bool is v != 0, everything else is a static_cast.
template <typename T, typename V>
__host__ __device__ inline T from_acc(V v) {
  if constexpr (std::is_same_v<T, bf16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, f16>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != V(0);
  } else {
    return static_cast<T>(v);
  }
}

/// A double scalar parameter as compute type A; integers saturate (as the CPU backend).
template <typename A>
inline A scalar_cast(double v) {
  if constexpr (std::is_integral_v<A>) {
    if (!(v == v)) return A(0);
    if (v <= static_cast<double>(std::numeric_limits<A>::lowest())) return std::numeric_limits<A>::lowest();
    if (v >= static_cast<double>(std::numeric_limits<A>::max())) return std::numeric_limits<A>::max();
  }
  return static_cast<A>(v);
}

// ------------------------------------------------------------------ math in float or double

namespace dmath {
__device__ inline float exp(float x) { return ::expf(x); }
__device__ inline double exp(double x) { return ::exp(x); }
__device__ inline float log(float x) { return ::logf(x); }
__device__ inline double log(double x) { return ::log(x); }
__device__ inline float sqrt(float x) { return ::sqrtf(x); }
__device__ inline double sqrt(double x) { return ::sqrt(x); }
__device__ inline float sin(float x) { return ::sinf(x); }
__device__ inline double sin(double x) { return ::sin(x); }
__device__ inline float cos(float x) { return ::cosf(x); }
__device__ inline double cos(double x) { return ::cos(x); }
__device__ inline float tanh(float x) { return ::tanhf(x); }
__device__ inline double tanh(double x) { return ::tanh(x); }
__device__ inline float erf(float x) { return ::erff(x); }
__device__ inline double erf(double x) { return ::erf(x); }
__device__ inline float pow(float x, float y) { return ::powf(x, y); }
__device__ inline double pow(double x, double y) { return ::pow(x, y); }
template <typename A>
__device__ inline bool isnan(A x) {
  return x != x;
}
}  // namespace dmath

// ------------------------------------------------------------------ strided offsets

/// Division by a divisor fixed on the host, as a multiply-high, an add and a shift
/// (Granlund & Montgomery): for d >= 1 and n < 2^31, n / d == (umulhi(n, magic) + n) >> shift
/// with shift = ceil(log2 d) and magic = floor(2^32 (2^shift - d) / d) + 1. The sum stays
/// below 2^32 because umulhi(n, magic) <= n < 2^31.
struct FastDivider {
  uint32_t divisor = 1, magic = 1, shift = 0;
  FastDivider() = default;
  explicit FastDivider(uint32_t d) : divisor(d) {
    while (shift < 32 && (uint64_t{1} << shift) < d) ++shift;
    magic = static_cast<uint32_t>((uint64_t{1} << 32) * ((uint64_t{1} << shift) - d) / d + 1);
  }
  __device__ inline uint32_t div(uint32_t n) const { return (__umulhi(n, magic) + n) >> shift; }
};

/// Maps a linear index over a shared shape to element offsets in N strided views
/// (dims coalesced on the host; row-major order of the shape). Shapes of fewer than 2^31
/// elements take a 32-bit path whose divisions are FastDivider multiplies.
template <int N>
struct OffsetCalc {
  int ndim = 0;
  bool index32 = false;
  int64_t shape[kMaxDims] = {};
  int64_t strides[N][kMaxDims] = {};
  FastDivider dividers[kMaxDims];

  __device__ inline void get(int64_t linear, int64_t (&off)[N]) const {
PETAL_UNROLL
    for (int k = 0; k < N; ++k) off[k] = 0;
    if (index32) {
      uint32_t l = static_cast<uint32_t>(linear);
      for (int d = ndim - 1; d >= 0; --d) {
        const uint32_t q = dividers[d].div(l);
        const int64_t idx = static_cast<int64_t>(l - q * dividers[d].divisor);
        l = q;
PETAL_UNROLL
        for (int k = 0; k < N; ++k) off[k] += idx * strides[k][d];
      }
      return;
    }
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t idx = linear % shape[d];
      linear /= shape[d];
PETAL_UNROLL
      for (int k = 0; k < N; ++k) off[k] += idx * strides[k][d];
    }
  }
  /// True when every view walks memory contiguously in linear order.
  bool contiguous() const {
    if (ndim != 1) return false;
    for (int k = 0; k < N; ++k)
      if (strides[k][0] != 1) return false;
    return true;
  }
};

/// Offset calculator for views sharing views[0]'s shape: drops size-1 dims and merges
/// adjacent dims that every view walks contiguously.
template <int N>
OffsetCalc<N> make_offset_calc(const View* const (&views)[N]) {
  OffsetCalc<N> c;
  const View& v0 = *views[0];
  for (int d = 0; d < v0.ndim; ++d) {
    if (v0.shape[d] == 1) continue;
    if (c.ndim > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (c.strides[k][c.ndim - 1] != views[k]->strides[d] * v0.shape[d]) merge = false;
      if (merge) {
        c.shape[c.ndim - 1] *= v0.shape[d];
        for (int k = 0; k < N; ++k) c.strides[k][c.ndim - 1] = views[k]->strides[d];
        continue;
      }
    }
    c.shape[c.ndim] = v0.shape[d];
    for (int k = 0; k < N; ++k) c.strides[k][c.ndim] = views[k]->strides[d];
    ++c.ndim;
  }
  if (c.ndim == 0) {
    c.ndim = 1;
    c.shape[0] = 1;
    for (int k = 0; k < N; ++k) c.strides[k][0] = 1;
  }
  int64_t numel = 1;
  for (int d = 0; d < c.ndim; ++d) numel *= c.shape[d];
  c.index32 = numel < (int64_t{1} << 31);
  if (c.index32)
    for (int d = 0; d < c.ndim; ++d) c.dividers[d] = FastDivider(static_cast<uint32_t>(c.shape[d]));
  return c;
}

// ------------------------------------------------------------------ vector loads

/// Bytes moved per vector access.
constexpr int kVectorBytes = 16;

/// kVectorBytes of consecutive elements, aligned so one load/store instruction moves them.
template <typename T>
struct alignas(kVectorBytes) Vector {
  static constexpr int kSize = kVectorBytes / static_cast<int>(sizeof(T));
  T v[kSize];
};

/// Loads Vector<T>::kSize elements from p (p must be kVectorBytes-aligned).
template <typename T>
__device__ inline Vector<T> load_vector(const T* p) {
#ifdef PETAL_SIM_COMPILE
  ::petal::sim::detail::check_alignment(p, kVectorBytes, "load_vector", __FILE__, __LINE__);
#endif
  return *reinterpret_cast<const Vector<T>*>(p);
}
template <typename T>
__device__ inline void store_vector(T* p, const Vector<T>& v) {
#ifdef PETAL_SIM_COMPILE
  ::petal::sim::detail::check_alignment(p, kVectorBytes, "store_vector", __FILE__, __LINE__);
#endif
  *reinterpret_cast<Vector<T>*>(p) = v;
}

/// True when every pointer is aligned for vector access.
inline bool vector_aligned(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % kVectorBytes != 0) return false;
  return true;
}

// ------------------------------------------------------------------ warp / block reduction

/// Value and position, for argmax/argmin reductions.
template <typename A>
struct ValueIndex {
  A value;
  int64_t index;
};

template <typename T>
__device__ inline T shuffle_xor(T v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}
__device__ inline int64_t shuffle_xor(int64_t v, int lane_mask) {
  return static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(v), lane_mask));
}
template <typename A>
__device__ inline ValueIndex<A> shuffle_xor(ValueIndex<A> v, int lane_mask) {
  return ValueIndex<A>{shuffle_xor(v.value, lane_mask), shuffle_xor(v.index, lane_mask)};
}

/// Butterfly reduction over the 32 lanes of a warp; every lane gets the result.
/// op must be associative and commutative (results are then order-independent
/// up to floating-point rounding).
template <typename T, typename Op>
__device__ inline T warp_reduce(T v, Op op) {
PETAL_UNROLL
  for (int mask = kWarpSize / 2; mask > 0; mask >>= 1) v = op(v, shuffle_xor(v, mask));
  return v;
}

/// Reduction over a block whose blockDim.x is a multiple of 32 (1-D blocks, or the x
/// dimension of a 2-D block when blockDim.y == 1); every thread gets the result.
/// scratch: __shared__ T[32]. Callable repeatedly with the same scratch.
template <typename T, typename Op>
__device__ inline T block_reduce(T v, Op op, T* scratch) {
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int warps = static_cast<int>(blockDim.x) / kWarpSize;
  v = warp_reduce(v, op);
  if (warps == 1) return v;
  __syncthreads();  // a previous call may still be reading scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int w = 1; w < warps; ++w) r = op(r, scratch[w]);
  return r;
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
/// max that propagates NaN (as the CPU backend and PyTorch).
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    if (dmath::isnan(a)) return a;
    if (dmath::isnan(b)) return b;
    return a > b ? a : b;
  }
};
struct MinOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    if (dmath::isnan(a)) return a;
    if (dmath::isnan(b)) return b;
    return a < b ? a : b;
  }
};

// ------------------------------------------------------------------ atomic accumulation

/// Atomically *addr = update(*addr) on a 1-byte element (bool, uint8). The GPU has no
/// byte-wide atomics: a CAS loop on the element's aligned 32-bit word (always inside the
/// allocation on a GPU, whose allocations are 256-byte granular). The simulator uses a
/// byte-wide host CAS instead, since its exact-size allocations (checked by ASan) may end
/// inside that word.
template <typename T, typename F>
__device__ inline void atomic_update_byte(T* addr, F update) {
  static_assert(sizeof(T) == 1, "byte atomics are for 1-byte types");
#ifdef PETAL_SIM_COMPILE
  T expected, desired;
  __atomic_load(addr, &expected, __ATOMIC_RELAXED);
  do {
    desired = update(expected);
  } while (!__atomic_compare_exchange(addr, &expected, &desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
#else
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  unsigned int* word = reinterpret_cast<unsigned int*>(a & ~uintptr_t(3));
  const unsigned shift = static_cast<unsigned>(a & 3u) * 8u;
  unsigned int old = *word, assumed;
  do {
    assumed = old;
    const uint8_t cur_bits = static_cast<uint8_t>((assumed >> shift) & 0xffu);
    T cur;
    memcpy(&cur, &cur_bits, 1);
    const T next = update(cur);
    uint8_t next_bits;
    memcpy(&next_bits, &next, 1);
    const unsigned replaced = (assumed & ~(0xffu << shift)) | (static_cast<unsigned>(next_bits) << shift);
    old = atomicCAS(word, assumed, replaced);
  } while (old != assumed);
#endif
}

/// Atomically *addr += v for every element type (16-bit floats add in float and round;
/// native atomics on sm_80+ for all but the 1-byte types).
template <typename T>
__device__ inline void atomic_add(T* addr, acc_t<T> v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    atomicAdd(addr, v);
  } else if constexpr (std::is_same_v<T, bf16>) {
    atomicAdd(addr, __float2bfloat16_rn(v));
  } else if constexpr (std::is_same_v<T, f16>) {
    atomicAdd(addr, __float2half_rn(v));
  } else if constexpr (std::is_same_v<T, int32_t>) {
    atomicAdd(reinterpret_cast<int*>(addr), static_cast<int>(v));
  } else if constexpr (std::is_same_v<T, int64_t>) {
    // Two's complement addition is the same on unsigned words.
    atomicAdd(reinterpret_cast<unsigned long long*>(addr), static_cast<unsigned long long>(v));
  } else if constexpr (std::is_same_v<T, bool>) {
    atomic_update_byte(addr, [v](bool cur) { return static_cast<bool>(cur + v); });
  } else {
    atomic_update_byte(addr, [v](T cur) { return static_cast<T>(cur + v); });
  }
}

}  // namespace petal::kernels::PETAL_CUDA_NS
