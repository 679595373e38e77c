// CUDA's device built-ins for the host compiler: with this header, kernels/cuda/*.cu compile
// with g++ (-DPETAL_SIM_COMPILE) and run on the SIMT simulator (engine.cpp, docs/simulator.md).
// - Execution-space keywords (__global__, __device__, ...) vanish; __shared__ becomes a
//   thread_local static (one copy per host thread, which runs one block at a time) or, in
//   ASan builds, a plain static (blocks then run one at a time on one host thread).
// - threadIdx/blockIdx/blockDim/gridDim read the state of the simulated thread running now.
// - Barriers and warp intrinsics call into the engine, which suspends the calling fiber until
//   its block (barrier) or the lanes named in the mask (warp intrinsics) have arrived, and
//   reports mismatches with the call site (captured by __builtin_FILE/__builtin_LINE).
// - Atomics are real atomics (blocks may run on several host threads at once).
// - bf16/f16 and the vector types are CUDA's own headers, compiled host-side.
// - Static shared memory declared with PETAL_SHARED(T, name, dims) is fresh for every block:
//   the first thread of a block that reaches the declaration fills it with poison (0xff
//   bytes: NaN for floats), so reading what no thread of the block wrote fails a test.
// - Atomics and __nanosleep are scheduling points (a spinning thread lets the others run);
//   a block whose threads only spin is reported as a hang.
// - Inline-PTX features (mma.sync, ldmatrix, cp.async) are wrapped in kernels/cuda/ptx.cuh,
//   whose sim bodies rendezvous the warp through warp_matrix_collective (mma, ldmatrix) and
//   keep pending cp.async copies in ThreadView::ptx_state.
#pragma once
#include <math.h>  // the float overloads of exp, log, ... in the global namespace, as in CUDA

#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>  // before the __noinline__ macro below: libstdc++ 12 writes __attribute__((__noinline__)) in shared_ptr_base.h
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

#include "kernels/sim/sim.h"

// ------------------------------------------------------------------ keywords
// crt/host_defines.h (pulled in by the headers above) maps these to GNU attributes that g++
// does not know; in simulated code they mean nothing.
#undef __global__
#undef __device__
#undef __host__
#undef __constant__
#undef __managed__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#undef __grid_constant__
#define __grid_constant__
#define __launch_bounds__(...)
#ifndef __noinline__
#define __noinline__ __attribute__((noinline))
#endif
#ifdef PETAL_SIM_STATIC_SHARED
#define __shared__ static
#else
#define __shared__ static thread_local
#endif

namespace petal::sim::detail {

/// What a simulated thread sees of itself; the engine's thread state starts with it.
struct ThreadView {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
  /// Per-simulated-thread state of the PTX wrappers (kernels/cuda/ptx.cuh: pending cp.async
  /// groups); the engine calls ptx_state_free(ptx_state) when the thread ends, if set.
  void* ptx_state = nullptr;
  void (*ptx_state_free)(void*) = nullptr;
};
/// The simulated thread running on this host thread (nullptr outside kernels).
extern __thread ThreadView* current_thread;

enum class WarpOp : int {
  Sync, ShflIdx, ShflUp, ShflDown, ShflXor, Ballot, Any, All,
  ReduceAddU, ReduceMinU, ReduceMaxU, ReduceMinI, ReduceMaxI, ReduceAnd, ReduceOr, ReduceXor,
  MatchAny, MatchAll,
  Matrix,  // a warp-wide matrix instruction (mma, ldmatrix): warp_matrix_collective
};
enum class BarrierKind : int { Plain, Count, And, Or };

/// Rendezvous of the lanes named in mask at a warp intrinsic; returns this lane's result.
/// value holds the lane's operand (zero-extended bits), param the lane/delta/lane-mask
/// argument of shuffles or the operand size in bytes of __match_*_sync.
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int param, int width, const char* name,
                         const char* file, int line);
/// Rendezvous of all 32 lanes of a warp at a warp-wide matrix instruction (mma.sync,
/// ldmatrix, ...): every lane of the warp must exist, be live and call it with the same
/// `name`. When the last lane arrives, compute(lane_data) runs once with the 32 lanes'
/// lane_data pointers (index = lane), in the context of that lane; then all lanes resume.
/// It orders the lanes like a shuffle. A missing or mismatched lane is an error naming the kernel.
void warp_matrix_collective(void* lane_data, void (*compute)(void* const* lane_data), const char* name,
                            const char* file, int line);
/// __syncthreads and its counting variants; returns the count / and / or of the predicates.
int block_barrier(BarrierKind kind, int predicate, const char* file, int line);
/// The block's dynamic shared memory (exactly the launch's byte count, 16-byte aligned).
void* dynamic_shared_memory();
/// The lanes of the calling thread's warp that exist and have not exited.
unsigned active_mask();
/// Static shared memory of the running block: poisons the `bytes` at p the first time a thread
/// of this block asks for them (later threads of the block get them as they are); returns p.
void* fresh_shared(void* p, size_t bytes);
/// A scheduling point (atomics, __nanosleep): lets the other threads of the block run.
/// `changed` tells whether the operation modified memory (progress, for hang detection).
void yield_point(const char* what, bool changed, const char* file, int line);
/// Fails the launch (naming kernel, block, thread and call site) unless p is `alignment`-aligned.
void check_alignment(const void* p, size_t alignment, const char* what, const char* file, int line);
/// __trap(): stops the launch with an error naming the kernel, block, thread and call site.
[[noreturn]] void trap(const char* file, int line);

template <typename T>
inline uint64_t to_bits(const T& v) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "warp intrinsics take operands of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}
template <typename T>
inline T from_bits(uint64_t bits) {
  T v;
  std::memcpy(static_cast<void*>(&v), &bits, sizeof(T));
  return v;
}

/// Atomically replaces *addr by update(*addr) (compare-and-swap loop); returns the old value.
template <typename T, typename F>
inline T atomic_update(T* addr, F update) {
  T expected;
  __atomic_load(addr, &expected, __ATOMIC_RELAXED);
  T desired = update(expected);
  while (!__atomic_compare_exchange(addr, &expected, &desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    desired = update(expected);
  return expected;
}

}  // namespace petal::sim::detail

// ------------------------------------------------------------------ thread/block built-ins
#define threadIdx (static_cast<const uint3&>(::petal::sim::detail::current_thread->thread_idx))
#define blockIdx (static_cast<const uint3&>(::petal::sim::detail::current_thread->block_idx))
#define blockDim (static_cast<const dim3&>(::petal::sim::detail::current_thread->block_dim))
#define gridDim (static_cast<const dim3&>(::petal::sim::detail::current_thread->grid_dim))
constexpr int warpSize = 32;

/// Static shared memory, per block and poisoned at block start: PETAL_SHARED(float, tile, [32][33]);
/// declares `tile` as a reference to a float[32][33] (nvcc side: __shared__ float tile[32][33]).
#define PETAL_SHARED(T, name, dims)                                                                 \
  __shared__ T name##_petal_storage dims;                                                          \
  auto& name = *static_cast<std::remove_reference_t<decltype(name##_petal_storage)>*>(              \
      ::petal::sim::detail::fresh_shared(&name##_petal_storage, sizeof(name##_petal_storage)))

/// Dynamic shared memory as a T array (nvcc side: extern __shared__ in common.cuh).
#define PETAL_DYNAMIC_SHARED(T, name) \
  T* name = reinterpret_cast<T*>(::petal::sim::detail::dynamic_shared_memory())

// ------------------------------------------------------------------ barriers
inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::petal::sim::detail::block_barrier(::petal::sim::detail::BarrierKind::Plain, 0, file, line);
}
inline int __syncthreads_count(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::petal::sim::detail::block_barrier(::petal::sim::detail::BarrierKind::Count, predicate != 0, file, line);
}
inline int __syncthreads_and(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::petal::sim::detail::block_barrier(::petal::sim::detail::BarrierKind::And, predicate != 0, file, line);
}
inline int __syncthreads_or(int predicate, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return ::petal::sim::detail::block_barrier(::petal::sim::detail::BarrierKind::Or, predicate != 0, file, line);
}
// Memory fences: every simulated thread of a block shares one host thread, and blocks on
// different host threads see each other through real fences.
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_system() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::petal::sim::detail::trap(file, line);
}
inline void __nanosleep(unsigned, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::petal::sim::detail::yield_point("__nanosleep", false, file, line);
}

// ------------------------------------------------------------------ warp intrinsics
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::petal::sim::detail::warp_collective(::petal::sim::detail::WarpOp::Sync, mask, 0, 0, 32, "__syncwarp", file, line);
}
inline unsigned __activemask() { return ::petal::sim::detail::active_mask(); }

#define PETAL_SIM_SHUFFLE(fn, op, Param)                                                                   \
  template <typename T>                                                                                    \
  inline T fn(unsigned mask, T var, Param p, int width = warpSize, const char* file = __builtin_FILE(),    \
              int line = __builtin_LINE()) {                                                               \
    return ::petal::sim::detail::from_bits<T>(::petal::sim::detail::warp_collective(                       \
        ::petal::sim::detail::WarpOp::op, mask, ::petal::sim::detail::to_bits(var), static_cast<int>(p),   \
        width, #fn, file, line));                                                                          \
  }
PETAL_SIM_SHUFFLE(__shfl_sync, ShflIdx, int)
PETAL_SIM_SHUFFLE(__shfl_up_sync, ShflUp, unsigned)
PETAL_SIM_SHUFFLE(__shfl_down_sync, ShflDown, unsigned)
PETAL_SIM_SHUFFLE(__shfl_xor_sync, ShflXor, int)
#undef PETAL_SIM_SHUFFLE

#define PETAL_SIM_VOTE(fn, op, Result)                                                                   \
  inline Result fn(unsigned mask, int predicate, const char* file = __builtin_FILE(),                    \
                   int line = __builtin_LINE()) {                                                        \
    return static_cast<Result>(::petal::sim::detail::warp_collective(                                    \
        ::petal::sim::detail::WarpOp::op, mask, predicate != 0, 0, 32, #fn, file, line));                \
  }
PETAL_SIM_VOTE(__ballot_sync, Ballot, unsigned)
PETAL_SIM_VOTE(__any_sync, Any, int)
PETAL_SIM_VOTE(__all_sync, All, int)
#undef PETAL_SIM_VOTE

#define PETAL_SIM_WARP_REDUCE(fn, op, T)                                                                  \
  inline T fn(unsigned mask, T value, const char* file = __builtin_FILE(), int line = __builtin_LINE()) { \
    return static_cast<T>(::petal::sim::detail::warp_collective(                                           \
        ::petal::sim::detail::WarpOp::op, mask, static_cast<uint32_t>(value), 0, 32, #fn, file, line));    \
  }
PETAL_SIM_WARP_REDUCE(__reduce_add_sync, ReduceAddU, unsigned)
PETAL_SIM_WARP_REDUCE(__reduce_add_sync, ReduceAddU, int)
PETAL_SIM_WARP_REDUCE(__reduce_min_sync, ReduceMinU, unsigned)
PETAL_SIM_WARP_REDUCE(__reduce_min_sync, ReduceMinI, int)
PETAL_SIM_WARP_REDUCE(__reduce_max_sync, ReduceMaxU, unsigned)
PETAL_SIM_WARP_REDUCE(__reduce_max_sync, ReduceMaxI, int)
PETAL_SIM_WARP_REDUCE(__reduce_and_sync, ReduceAnd, unsigned)
PETAL_SIM_WARP_REDUCE(__reduce_or_sync, ReduceOr, unsigned)
PETAL_SIM_WARP_REDUCE(__reduce_xor_sync, ReduceXor, unsigned)
#undef PETAL_SIM_WARP_REDUCE

template <typename T>
inline unsigned __match_any_sync(unsigned mask, T value, const char* file = __builtin_FILE(),
                                 int line = __builtin_LINE()) {
  return static_cast<unsigned>(::petal::sim::detail::warp_collective(
      ::petal::sim::detail::WarpOp::MatchAny, mask, ::petal::sim::detail::to_bits(value), sizeof(T), 32,
      "__match_any_sync", file, line));
}
template <typename T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred, const char* file = __builtin_FILE(),
                                 int line = __builtin_LINE()) {
  auto r = static_cast<unsigned>(::petal::sim::detail::warp_collective(
      ::petal::sim::detail::WarpOp::MatchAll, mask, ::petal::sim::detail::to_bits(value), sizeof(T), 32,
      "__match_all_sync", file, line));
  *pred = r != 0;
  return r;
}

// ------------------------------------------------------------------ atomics
// Old value returned, relaxed ordering (as on the GPU); float/half types via CAS loops.
// Every atomic is a scheduling point, after the operation (a thread spinning on an atomic lets
// the thread it waits for run); it made progress when it changed the value.
#define PETAL_SIM_ATOMIC_FETCH(fn, builtin, T)                                                        \
  inline T fn(T* address, T val, const char* file = __builtin_FILE(), int line = __builtin_LINE()) { \
    const T old = builtin(address, val, __ATOMIC_RELAXED);                                          \
    ::petal::sim::detail::yield_point(#fn, __atomic_load_n(address, __ATOMIC_RELAXED) != old, file, line); \
    return old;                                                                                     \
  }
PETAL_SIM_ATOMIC_FETCH(atomicAdd, __atomic_fetch_add, int)
PETAL_SIM_ATOMIC_FETCH(atomicAdd, __atomic_fetch_add, unsigned)
PETAL_SIM_ATOMIC_FETCH(atomicAdd, __atomic_fetch_add, unsigned long long)
PETAL_SIM_ATOMIC_FETCH(atomicSub, __atomic_fetch_sub, int)
PETAL_SIM_ATOMIC_FETCH(atomicSub, __atomic_fetch_sub, unsigned)
PETAL_SIM_ATOMIC_FETCH(atomicAnd, __atomic_fetch_and, int)
PETAL_SIM_ATOMIC_FETCH(atomicAnd, __atomic_fetch_and, unsigned)
PETAL_SIM_ATOMIC_FETCH(atomicAnd, __atomic_fetch_and, unsigned long long)
PETAL_SIM_ATOMIC_FETCH(atomicOr, __atomic_fetch_or, int)
PETAL_SIM_ATOMIC_FETCH(atomicOr, __atomic_fetch_or, unsigned)
PETAL_SIM_ATOMIC_FETCH(atomicOr, __atomic_fetch_or, unsigned long long)
PETAL_SIM_ATOMIC_FETCH(atomicXor, __atomic_fetch_xor, int)
PETAL_SIM_ATOMIC_FETCH(atomicXor, __atomic_fetch_xor, unsigned)
PETAL_SIM_ATOMIC_FETCH(atomicXor, __atomic_fetch_xor, unsigned long long)
#undef PETAL_SIM_ATOMIC_FETCH

#define PETAL_SIM_ATOMIC_UPDATE(fn, T, expr)                                                          \
  inline T fn(T* address, T val, const char* file = __builtin_FILE(), int line = __builtin_LINE()) { \
    const T old = ::petal::sim::detail::atomic_update(address, [val](T old) -> T { return expr; });  \
    const T now = expr;                                                                             \
    ::petal::sim::detail::yield_point(#fn, std::memcmp(&old, &now, sizeof(T)) != 0, file, line);     \
    return old;                                                                                     \
  }
PETAL_SIM_ATOMIC_UPDATE(atomicAdd, float, old + val)
PETAL_SIM_ATOMIC_UPDATE(atomicAdd, double, old + val)
PETAL_SIM_ATOMIC_UPDATE(atomicAdd, __half, __float2half(__half2float(old) + __half2float(val)))
PETAL_SIM_ATOMIC_UPDATE(atomicAdd, __nv_bfloat16, __float2bfloat16(__bfloat162float(old) + __bfloat162float(val)))
PETAL_SIM_ATOMIC_UPDATE(atomicMax, int, old < val ? val : old)
PETAL_SIM_ATOMIC_UPDATE(atomicMax, unsigned, old < val ? val : old)
PETAL_SIM_ATOMIC_UPDATE(atomicMax, long long, old < val ? val : old)
PETAL_SIM_ATOMIC_UPDATE(atomicMax, unsigned long long, old < val ? val : old)
PETAL_SIM_ATOMIC_UPDATE(atomicMin, int, val < old ? val : old)
PETAL_SIM_ATOMIC_UPDATE(atomicMin, unsigned, val < old ? val : old)
PETAL_SIM_ATOMIC_UPDATE(atomicMin, long long, val < old ? val : old)
PETAL_SIM_ATOMIC_UPDATE(atomicMin, unsigned long long, val < old ? val : old)
PETAL_SIM_ATOMIC_UPDATE(atomicInc, unsigned, old >= val ? 0u : old + 1u)
PETAL_SIM_ATOMIC_UPDATE(atomicDec, unsigned, (old == 0u || old > val) ? val : old - 1u)
#undef PETAL_SIM_ATOMIC_UPDATE

template <typename T>
inline T petal_sim_atomic_exchange(T* address, T val, const char* file, int line) {
  T old;
  __atomic_exchange(address, &val, &old, __ATOMIC_RELAXED);
  ::petal::sim::detail::yield_point("atomicExch", std::memcmp(&old, &val, sizeof(T)) != 0, file, line);
  return old;
}
#define PETAL_SIM_ATOMIC_EXCH(T)                                                                     \
  inline T atomicExch(T* a, T v, const char* file = __builtin_FILE(), int line = __builtin_LINE()) { \
    return petal_sim_atomic_exchange(a, v, file, line);                                             \
  }
PETAL_SIM_ATOMIC_EXCH(int)
PETAL_SIM_ATOMIC_EXCH(unsigned)
PETAL_SIM_ATOMIC_EXCH(unsigned long long)
PETAL_SIM_ATOMIC_EXCH(float)
#undef PETAL_SIM_ATOMIC_EXCH

template <typename T>
inline T petal_sim_atomic_cas(T* address, T compare, T val, const char* file, int line) {
  const bool swapped =
      __atomic_compare_exchange(address, &compare, &val, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  ::petal::sim::detail::yield_point("atomicCAS", swapped && std::memcmp(&compare, &val, sizeof(T)) != 0, file, line);
  return compare;  // holds the old value whether or not the swap happened
}
#define PETAL_SIM_ATOMIC_CAS(T)                                                                           \
  inline T atomicCAS(T* a, T c, T v, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {  \
    return petal_sim_atomic_cas(a, c, v, file, line);                                                    \
  }
PETAL_SIM_ATOMIC_CAS(int)
PETAL_SIM_ATOMIC_CAS(unsigned)
PETAL_SIM_ATOMIC_CAS(unsigned long long)
PETAL_SIM_ATOMIC_CAS(unsigned short)
#undef PETAL_SIM_ATOMIC_CAS

// ------------------------------------------------------------------ loads/stores with cache hints
template <typename T>
inline T __ldg(const T* p) { return *p; }
template <typename T>
inline T __ldcg(const T* p) { return *p; }
template <typename T>
inline T __ldcs(const T* p) { return *p; }
template <typename T>
inline T __ldlu(const T* p) { return *p; }
template <typename T>
inline void __stcg(T* p, T v) { *p = v; }
template <typename T>
inline void __stcs(T* p, T v) { *p = v; }
template <typename T>
inline void __stwt(T* p, T v) { *p = v; }

// ------------------------------------------------------------------ math intrinsics
// glibc declares (but does not export) __expf, __logf, ... with noexcept; these inline
// definitions match those declarations. The fast GPU intrinsics are computed at full
// precision here, which is within their documented error bounds.
inline float __expf(float x) noexcept { return ::expf(x); }
inline float __exp10f(float x) noexcept { return ::exp10f(x); }
inline float __exp2f(float x) noexcept { return ::exp2f(x); }
inline float __logf(float x) noexcept { return ::logf(x); }
inline float __log2f(float x) noexcept { return ::log2f(x); }
inline float __log10f(float x) noexcept { return ::log10f(x); }
inline float __sinf(float x) noexcept { return ::sinf(x); }
inline float __cosf(float x) noexcept { return ::cosf(x); }
inline float __tanf(float x) noexcept { return ::tanf(x); }
inline float __tanhf(float x) noexcept { return ::tanhf(x); }
inline float __powf(float x, float y) noexcept { return ::powf(x, y); }
inline void __sincosf(float x, float* s, float* c) noexcept { *s = ::sinf(x); *c = ::cosf(x); }
inline float __fdividef(float x, float y) noexcept { return x / y; }
inline float fdividef(float x, float y) noexcept { return x / y; }
inline float rsqrtf(float x) noexcept { return 1.0f / ::sqrtf(x); }
inline double rsqrt(double x) noexcept { return 1.0 / ::sqrt(x); }
inline float __frsqrt_rn(float x) noexcept { return 1.0f / ::sqrtf(x); }
inline float __fsqrt_rn(float x) noexcept { return ::sqrtf(x); }
inline float __frcp_rn(float x) noexcept { return 1.0f / x; }
inline double __drcp_rn(double x) noexcept { return 1.0 / x; }
inline float __fadd_rn(float x, float y) noexcept { return x + y; }
inline float __fsub_rn(float x, float y) noexcept { return x - y; }
inline float __fmul_rn(float x, float y) noexcept { return x * y; }
inline float __fdiv_rn(float x, float y) noexcept { return x / y; }
inline float __fmaf_rn(float x, float y, float z) noexcept { return ::fmaf(x, y, z); }
inline double __dadd_rn(double x, double y) noexcept { return x + y; }
inline double __dmul_rn(double x, double y) noexcept { return x * y; }
inline double __fma_rn(double x, double y, double z) noexcept { return ::fma(x, y, z); }
inline float __saturatef(float x) noexcept { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0

/// Float to integer conversion as PTX cvt.rni/rzi/rmi/rpi does it: saturating, NaN -> 0.
template <typename I, typename F>
inline I petal_sim_convert(F x) noexcept {
  if (x != x) return 0;
  if (x <= static_cast<F>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (x >= static_cast<F>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(x);
}
inline int __float2int_rn(float x) noexcept { return petal_sim_convert<int>(::nearbyintf(x)); }
inline int __float2int_rz(float x) noexcept { return petal_sim_convert<int>(::truncf(x)); }
inline int __float2int_rd(float x) noexcept { return petal_sim_convert<int>(::floorf(x)); }
inline int __float2int_ru(float x) noexcept { return petal_sim_convert<int>(::ceilf(x)); }
inline unsigned __float2uint_rn(float x) noexcept { return petal_sim_convert<unsigned>(::nearbyintf(x)); }
inline unsigned __float2uint_rz(float x) noexcept { return petal_sim_convert<unsigned>(::truncf(x)); }
inline long long __float2ll_rn(float x) noexcept { return petal_sim_convert<long long>(::nearbyintf(x)); }
inline int __double2int_rn(double x) noexcept { return petal_sim_convert<int>(::nearbyint(x)); }
inline float __int2float_rn(int x) noexcept { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) noexcept { return static_cast<float>(x); }
inline float __ll2float_rn(long long x) noexcept { return static_cast<float>(x); }
inline float __double2float_rn(double x) noexcept { return static_cast<float>(x); }

inline int __float_as_int(float x) noexcept { return ::petal::sim::detail::from_bits<int>(::petal::sim::detail::to_bits(x)); }
inline unsigned __float_as_uint(float x) noexcept { return ::petal::sim::detail::from_bits<unsigned>(::petal::sim::detail::to_bits(x)); }
inline float __int_as_float(int x) noexcept { return ::petal::sim::detail::from_bits<float>(::petal::sim::detail::to_bits(x)); }
inline float __uint_as_float(unsigned x) noexcept { return ::petal::sim::detail::from_bits<float>(::petal::sim::detail::to_bits(x)); }
inline long long __double_as_longlong(double x) noexcept { return ::petal::sim::detail::from_bits<long long>(::petal::sim::detail::to_bits(x)); }
inline double __longlong_as_double(long long x) noexcept { return ::petal::sim::detail::from_bits<double>(::petal::sim::detail::to_bits(x)); }

inline int __popc(unsigned x) noexcept { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) noexcept { return __builtin_popcountll(x); }
inline int __clz(int x) noexcept { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) noexcept { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) noexcept { return __builtin_ffs(x); }
inline int __ffsll(long long x) noexcept { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) noexcept {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline int __mul24(int x, int y) noexcept {  // low 32 bits of the product of the sign-extended low 24 bits
  const int64_t a = ((static_cast<int64_t>(x) & 0xffffff) ^ 0x800000) - 0x800000;
  const int64_t b = ((static_cast<int64_t>(y) & 0xffffff) ^ 0x800000) - 0x800000;
  return static_cast<int>(static_cast<uint32_t>(a * b));
}
inline unsigned __umul24(unsigned x, unsigned y) noexcept { return (x & 0xffffffu) * (y & 0xffffffu); }
inline int __mulhi(int x, int y) noexcept { return static_cast<int>((static_cast<int64_t>(x) * y) >> 32); }
inline unsigned __umulhi(unsigned x, unsigned y) noexcept {
  return static_cast<unsigned>((static_cast<uint64_t>(x) * y) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long x, unsigned long long y) noexcept {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(x) * y) >> 64);
}

// min/max as CUDA device code has them (unqualified, for integer and floating types).
#define PETAL_SIM_MINMAX(A, B, R)                                                              \
  inline R min(A a, B b) noexcept { return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(a) : static_cast<R>(b); } \
  inline R max(A a, B b) noexcept { return static_cast<R>(a) < static_cast<R>(b) ? static_cast<R>(b) : static_cast<R>(a); }
PETAL_SIM_MINMAX(int, int, int)
PETAL_SIM_MINMAX(unsigned, unsigned, unsigned)
PETAL_SIM_MINMAX(int, unsigned, unsigned)
PETAL_SIM_MINMAX(unsigned, int, unsigned)
PETAL_SIM_MINMAX(long, long, long)
PETAL_SIM_MINMAX(unsigned long, unsigned long, unsigned long)
PETAL_SIM_MINMAX(long long, long long, long long)
PETAL_SIM_MINMAX(unsigned long long, unsigned long long, unsigned long long)
PETAL_SIM_MINMAX(long long, unsigned long long, unsigned long long)
PETAL_SIM_MINMAX(unsigned long long, long long, unsigned long long)
#undef PETAL_SIM_MINMAX
inline float min(float a, float b) noexcept { return ::fminf(a, b); }
inline float max(float a, float b) noexcept { return ::fmaxf(a, b); }
inline double min(double a, double b) noexcept { return ::fmin(a, b); }
inline double max(double a, double b) noexcept { return ::fmax(a, b); }
inline double min(float a, double b) noexcept { return ::fmin(a, b); }
inline double max(float a, double b) noexcept { return ::fmax(a, b); }
inline double min(double a, float b) noexcept { return ::fmin(a, b); }
inline double max(double a, float b) noexcept { return ::fmax(a, b); }
