// Warp-level tensor-core and async-copy primitives: the one header of inline-PTX wrappers.
//   mma_m16n8k16_bf16 / _f16   mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32
//   ldmatrix_x{1,2,4}[_trans]  ldmatrix.sync.aligned.m8n8.x{1,2,4}[.trans].shared.b16
//   cp_async_cg_16             cp.async.cg.shared.global 16 bytes, + cp_async_commit_group,
//                              cp_async_wait_group<N>, cp_async_wait_all
// Three builds of one header:
// - nvcc (__CUDACC__): each wrapper is one inline-asm instruction (shared addresses through
//   __cvta_generic_to_shared).
// - the simulator (PETAL_SIM_COMPILE, g++ against kernels/sim/sim_cuda.h): mma and ldmatrix
//   rendezvous the 32 lanes of the warp (detail::warp_matrix_collective) and compute what the
//   PTX ISA specifies, element by element, through the fragment-layout functions of
//   ptx::layout below (mma: exact products summed in double, rounded once to f32);
//   cp.async snapshots the source at issue, fills the destination with
//   0xFF bytes (NaN in f32/bf16/f16) and writes the snapshot when a wait completes its group,
//   so a read before the wait sees poison.
// - any other host compile: only ptx::layout (for the CuTe layout check, tests/sim).
// The layout functions are the PTX ISA's "Matrix Fragments for mma.m16n8k16 with floating
// point type" and the ldmatrix description; tests/sim/ptx_cute_check.cpp compares them with
// CuTe's MMA_Traits / Copy_Traits layouts, so the sim computes through an independently
// checked mapping. docs/kernels.md ("Tensor-core primitives") has the tables.
// Assumptions: bf16/f16 packs hold the lower-column (lower-k) element in the low 16 bits, as on
// the GPU; all addresses are 16-byte aligned (checked in the sim).
#pragma once
#include <string>
#include <cstdint>

#if defined(__CUDACC__)
#define PETAL_PTX_HD __host__ __device__
#else
#define PETAL_PTX_HD
#endif

namespace petal::kernels::ptx {

// ------------------------------------------------------------------ fragment layouts
namespace layout {

struct RowCol {
  int row;
  int col;
};

/// mma.m16n8k16 A (16x16, row-major operand): element i in [0, 8) of a lane's fragment
/// (register i/2, low half when i is even) -> (row m, col k).
PETAL_PTX_HD constexpr RowCol mma_a_row_col(int lane, int i) {
  return {lane / 4 + 8 * ((i / 2) % 2), 2 * (lane % 4) + i % 2 + 8 * (i / 4)};
}
/// mma.m16n8k16 B (16x8, K x N, "col" operand): element i in [0, 4) -> (row k, col n).
PETAL_PTX_HD constexpr RowCol mma_b_row_col(int lane, int i) {
  return {2 * (lane % 4) + i % 2 + 8 * (i / 2), lane / 4};
}
/// mma.m16n8k16 C and D (16x8 f32): element i in [0, 4) (register i) -> (row m, col n).
PETAL_PTX_HD constexpr RowCol mma_c_row_col(int lane, int i) {
  return {lane / 4 + 8 * (i / 2), 2 * (lane % 4) + i % 2};
}

struct MatrixRow {
  int matrix;
  int row;
};
/// ldmatrix: the address that `lane` supplies is that of row `row` of matrix `matrix`; only
/// lanes below 8 * (number of matrices) are read.
PETAL_PTX_HD constexpr MatrixRow ldmatrix_source(int lane) { return {lane / 8, lane % 8}; }
/// ldmatrix: element e in {0, 1} of result register j of `lane` is element (row, col) of
/// matrix j as stored in shared memory (row = which row address, col = b16 index in the row).
/// Without .trans: (lane / 4, 2 (lane % 4) + e); with .trans the transpose of that.
PETAL_PTX_HD constexpr RowCol ldmatrix_row_col(int lane, int e, bool trans) {
  return trans ? RowCol{2 * (lane % 4) + e, lane / 4} : RowCol{lane / 4, 2 * (lane % 4) + e};
}

}  // namespace layout

/// Two 16-bit values (bf16 or f16 bits) in one register, `lo` in the low half.
PETAL_PTX_HD constexpr uint32_t pack_b16x2(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

}  // namespace petal::kernels::ptx

#if defined(__CUDACC__)
// ================================================================== GPU: inline PTX
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "kernels/cuda/ptx.cuh needs sm_80 or newer (bf16 mma.sync, cp.async)"
#endif
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace petal::kernels::ptx {

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// d = a * b + c for one 16x8x16 tile (bf16 inputs, f32 accumulate). d may be c.
__device__ __forceinline__ void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                  const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}
/// d = a * b + c for one 16x8x16 tile (f16 inputs, f32 accumulate). d may be c.
__device__ __forceinline__ void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                                 const float (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]),
        "f"(c[3]));
}

__device__ __forceinline__ void ldmatrix_x1(uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t (&r)[1], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
               : "=r"(r[0])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t (&r)[2], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r[0]), "=r"(r[1])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}

/// Starts an asynchronous copy of 16 bytes from global to shared memory (L2 only, .cg).
__device__ __forceinline__ void cp_async_cg_16(void* shared_dst, const void* global_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared_address(shared_dst)),
               "l"(__cvta_generic_to_global(global_src))
               : "memory");
}
/// Closes the group of the cp.async calls this thread issued since the previous commit.
__device__ __forceinline__ void cp_async_commit_group() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/// Waits until at most N of this thread's committed groups are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait_group() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
/// Waits for all of this thread's cp.async calls, committed or not.
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

}  // namespace petal::kernels::ptx

#elif defined(PETAL_SIM_COMPILE)
// ================================================================== simulator
#include <cstring>
#include <deque>
#include <vector>

#include <petal/error.h>

#include "kernels/sim/sim_cuda.h"

namespace petal::kernels::ptx {
namespace sim_detail {

inline float b16_to_float(uint16_t bits, bool is_bf16) {
  if (is_bf16) {
    const uint32_t f = static_cast<uint32_t>(bits) << 16;  // bf16 is the top half of an f32
    float v;
    std::memcpy(&v, &f, sizeof v);
    return v;
  }
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}
inline uint16_t b16_of(uint32_t reg, int e) { return static_cast<uint16_t>(reg >> (16 * e)); }

inline void check_aligned_16(const void* p, const char* what, const char* op, const char* file, int line) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {
    // The engine's failure path names the kernel, block and thread and stops the launch.
    const std::string description = std::string(op) + " " + what;
    ::petal::sim::detail::check_alignment(p, 16, description.c_str(), file, line);
  }
}

struct MmaLane {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
  float d[4];
};

// Each product of two bf16 (8-bit significands) or two f16 (11-bit) is exact in double, and
// the sum of the 16 products and c carries at least 53 - 22 - 5 bits beyond f32: the result
// is the exact dot product rounded once to f32. A GPU adds in f32 with its own (unspecified)
// order and rounding, so results agree to a few f32 ulps of the largest partial sum.
template <bool IsBf16>
void mma_compute(void* const* data) {
  double a[16][16], b[16][8], acc[16][8];
  for (int l = 0; l < 32; ++l) {
    const auto* x = static_cast<const MmaLane*>(data[l]);
    for (int i = 0; i < 8; ++i) {
      const auto rc = layout::mma_a_row_col(l, i);
      a[rc.row][rc.col] = b16_to_float(b16_of(x->a[i / 2], i % 2), IsBf16);
    }
    for (int i = 0; i < 4; ++i) {
      const auto rc = layout::mma_b_row_col(l, i);
      b[rc.row][rc.col] = b16_to_float(b16_of(x->b[i / 2], i % 2), IsBf16);
    }
    for (int i = 0; i < 4; ++i) {
      const auto rc = layout::mma_c_row_col(l, i);
      acc[rc.row][rc.col] = x->c[i];
    }
  }
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      double s = acc[m][n];
      for (int k = 0; k < 16; ++k) s += a[m][k] * b[k][n];
      acc[m][n] = s;
    }
  for (int l = 0; l < 32; ++l) {
    auto* x = static_cast<MmaLane*>(data[l]);
    for (int i = 0; i < 4; ++i) {
      const auto rc = layout::mma_c_row_col(l, i);
      x->d[i] = static_cast<float>(acc[rc.row][rc.col]);
    }
  }
}

template <bool IsBf16>
inline void mma(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4], const char* file,
                int line) {
  MmaLane x;
  std::memcpy(x.a, a, sizeof x.a);
  std::memcpy(x.b, b, sizeof x.b);
  std::memcpy(x.c, c, sizeof x.c);
  ::petal::sim::detail::warp_matrix_collective(
      &x, mma_compute<IsBf16>,
      IsBf16 ? "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" : "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32",
      file, line);
  std::memcpy(d, x.d, sizeof x.d);
}

struct LdmatrixLane {
  const void* row;
  uint32_t r[4];
};

template <int Count, bool Trans>
void ldmatrix_compute(void* const* data) {
  uint16_t m[Count][8][8];  // matrix, row, col as stored in shared memory
  for (int l = 0; l < 8 * Count; ++l) {
    const auto src = layout::ldmatrix_source(l);
    std::memcpy(m[src.matrix][src.row], static_cast<const LdmatrixLane*>(data[l])->row, 16);
  }
  for (int l = 0; l < 32; ++l) {
    auto* x = static_cast<LdmatrixLane*>(data[l]);
    for (int j = 0; j < Count; ++j) {
      const auto lo = layout::ldmatrix_row_col(l, 0, Trans), hi = layout::ldmatrix_row_col(l, 1, Trans);
      x->r[j] = pack_b16x2(m[j][lo.row][lo.col], m[j][hi.row][hi.col]);
    }
  }
}

template <int Count, bool Trans>
inline void ldmatrix(uint32_t (&r)[Count], const void* row, const char* name, const char* file, int line) {
  // Every lane passes an address; the instruction reads those of lanes 0 .. 8 Count - 1.
  const auto* t = ::petal::sim::detail::current_thread;
  const unsigned lane =
      (t->thread_idx.x + t->block_dim.x * (t->thread_idx.y + t->block_dim.y * t->thread_idx.z)) % 32;
  if (lane < 8u * Count) check_aligned_16(row, "row address", name, file, line);
  LdmatrixLane x{row, {0, 0, 0, 0}};
  ::petal::sim::detail::warp_matrix_collective(&x, ldmatrix_compute<Count, Trans>, name, file, line);
  std::memcpy(r, x.r, sizeof r);
}

// Pending cp.async copies of one simulated thread (ThreadView::ptx_state).
struct AsyncCopy {
  void* dst;
  unsigned char bytes[16];
};
struct CpAsyncState {
  std::vector<AsyncCopy> open;                  // issued since the last commit
  std::deque<std::vector<AsyncCopy>> committed;  // oldest first
};
inline CpAsyncState& cp_async_state() {
  auto* t = ::petal::sim::detail::current_thread;
  if (t->ptx_state == nullptr) {
    t->ptx_state = new CpAsyncState;
    t->ptx_state_free = [](void* p) { delete static_cast<CpAsyncState*>(p); };
  }
  return *static_cast<CpAsyncState*>(t->ptx_state);
}
inline void complete(const std::vector<AsyncCopy>& group) {
  for (const auto& c : group) std::memcpy(c.dst, c.bytes, 16);
}

}  // namespace sim_detail

/// d = a * b + c for one 16x8x16 tile (bf16 inputs, f32 accumulate). d may be c.
inline void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4],
                              const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  sim_detail::mma<true>(d, a, b, c, file, line);
}
/// d = a * b + c for one 16x8x16 tile (f16 inputs, f32 accumulate). d may be c.
inline void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], const float (&c)[4],
                             const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  sim_detail::mma<false>(d, a, b, c, file, line);
}

#define PETAL_SIM_LDMATRIX(fn, count, trans, ptx_name)                                                     \
  inline void fn(uint32_t (&r)[count], const void* row, const char* file = __builtin_FILE(),               \
                 int line = __builtin_LINE()) {                                                            \
    sim_detail::ldmatrix<count, trans>(r, row, ptx_name, file, line);                                      \
  }
PETAL_SIM_LDMATRIX(ldmatrix_x1, 1, false, "ldmatrix.sync.aligned.m8n8.x1.shared.b16")
PETAL_SIM_LDMATRIX(ldmatrix_x2, 2, false, "ldmatrix.sync.aligned.m8n8.x2.shared.b16")
PETAL_SIM_LDMATRIX(ldmatrix_x4, 4, false, "ldmatrix.sync.aligned.m8n8.x4.shared.b16")
PETAL_SIM_LDMATRIX(ldmatrix_x1_trans, 1, true, "ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16")
PETAL_SIM_LDMATRIX(ldmatrix_x2_trans, 2, true, "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16")
PETAL_SIM_LDMATRIX(ldmatrix_x4_trans, 4, true, "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16")
#undef PETAL_SIM_LDMATRIX

/// Starts an asynchronous copy of 16 bytes: the source is read now, the destination holds
/// 0xFF bytes until a wait completes the group of this copy.
inline void cp_async_cg_16(void* shared_dst, const void* global_src, const char* file = __builtin_FILE(),
                           int line = __builtin_LINE()) {
  sim_detail::check_aligned_16(shared_dst, "shared destination", "cp.async.cg.shared.global", file, line);
  sim_detail::check_aligned_16(global_src, "global source", "cp.async.cg.shared.global", file, line);
  sim_detail::AsyncCopy c;
  c.dst = shared_dst;
  std::memcpy(c.bytes, global_src, 16);
  std::memset(shared_dst, 0xFF, 16);
  sim_detail::cp_async_state().open.push_back(c);
}
/// Closes the group of the cp.async calls this thread issued since the previous commit.
inline void cp_async_commit_group() {
  auto& s = sim_detail::cp_async_state();
  s.committed.push_back(std::move(s.open));
  s.open.clear();
}
/// Waits until at most N of this thread's committed groups are pending (completes the oldest).
template <int N>
inline void cp_async_wait_group() {
  static_assert(N >= 0 && N <= 7, "cp.async.wait_group takes an immediate in [0, 7]");
  auto& s = sim_detail::cp_async_state();
  while (s.committed.size() > static_cast<size_t>(N)) {
    sim_detail::complete(s.committed.front());
    s.committed.pop_front();
  }
}
/// Waits for all of this thread's cp.async calls, committed or not.
inline void cp_async_wait_all() {
  cp_async_commit_group();
  cp_async_wait_group<0>();
}

}  // namespace petal::kernels::ptx
#endif
