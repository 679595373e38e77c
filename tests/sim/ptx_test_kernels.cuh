// Test kernels built only from the primitives of kernels/cuda/ptx.cuh (cp.async, ldmatrix,
// mma.sync): one 16x8x16 tile and a 64x64-block, warp-tiled GEMM. Compiled twice: by g++
// for the simulator (tests/sim/test_ptx_mma.cpp runs them against a float64 reference) and by
// nvcc for sm_80/sm_90 (tests/sim/ptx_spill_check.cu, ptxas reports registers and spills).
// Operands: A is M x K row-major, B is K x N row-major (so B fragments come from
// ldmatrix .trans), C/D are M x N row-major f32; T is __nv_bfloat16 or __half.
#pragma once
#include <cstdint>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/ptx.cuh"

#ifdef __CUDACC__
#define PETAL_PTX_TEST_UNROLL _Pragma("unroll")
#else
#define PETAL_PTX_TEST_UNROLL
#endif

#ifndef PETAL_DYNAMIC_SHARED
#define PETAL_DYNAMIC_SHARED(T, name)                             \
  extern __shared__ __align__(16) unsigned char petal_smem_raw[]; \
  T* name = reinterpret_cast<T*>(petal_smem_raw)
#endif

namespace petal::ptx_test {

namespace ptx = ::petal::kernels::ptx;

template <typename T>
__device__ __forceinline__ void mma_tile(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                                         const float (&c)[4]) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    ptx::mma_m16n8k16_bf16(d, a, b, c);
  else
    ptx::mma_m16n8k16_f16(d, a, b, c);
}

/// One warp: d = a (16x16) * b (16x8) + c (16x8). Dynamic shared memory: 768 bytes.
template <typename T>
__global__ void mma_tile_16x8x16(const T* a, const T* b, const float* c, float* d) {
  PETAL_DYNAMIC_SHARED(T, smem);
  T* as = smem;            // 16 rows of 16 (32 bytes a row)
  T* bs = smem + 16 * 16;  // 16 rows (k) of 8 (16 bytes a row)
  const int lane = static_cast<int>(threadIdx.x);
  ptx::cp_async_cg_16(as + 8 * lane, a + 8 * lane);  // 32 chunks of 8 elements
  if (lane < 16) ptx::cp_async_cg_16(bs + 8 * lane, b + 8 * lane);
  ptx::cp_async_commit_group();
  ptx::cp_async_wait_group<0>();
  __syncthreads();  // the other lanes' copies

  // A registers 0..3 are the 8x8 blocks (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15):
  // lane l addresses row l % 8 of block l / 8.
  uint32_t af[4];
  ptx::ldmatrix_x4(af, as + (lane % 8 + 8 * ((lane / 8) % 2)) * 16 + 8 * (lane / 16));
  // B registers 0, 1 are k 0-7 and k 8-15 of the 8 columns, stored k-major: transpose on load.
  uint32_t bf[2];
  ptx::ldmatrix_x2_trans(bf, bs + (lane % 16) * 8);
  float cf[4];
  for (int i = 0; i < 4; ++i) {
    const auto rc = ptx::layout::mma_c_row_col(lane, i);
    cf[i] = c[rc.row * 8 + rc.col];
  }
  mma_tile<T>(cf, af, bf, cf);
  for (int i = 0; i < 4; ++i) {
    const auto rc = ptx::layout::mma_c_row_col(lane, i);
    d[rc.row * 8 + rc.col] = cf[i];
  }
}

// GEMM geometry: 64x64 block tile, 4 warps of 32x32 (2 x 2), k in steps of 32 with two
// shared-memory stages (the next stage's cp.async overlaps this stage's mma).
constexpr int kBlockM = 64, kBlockN = 64, kBlockK = 32, kThreads = 128;
// Rows padded by 8 elements (16 bytes): 16-byte aligned rows for cp.async/ldmatrix, and the
// 8 row addresses of an ldmatrix fall in different bank groups.
constexpr int kLdA = kBlockK + 8, kLdB = kBlockN + 8;
constexpr int kStageElems = kBlockM * kLdA + kBlockK * kLdB;
/// Dynamic shared memory of gemm_64x64 in bytes (2 stages of A and B tiles).
constexpr int gemm_smem_bytes(int element_bytes) { return 2 * kStageElems * element_bytes; }

/// C = A * B for M, N multiples of 64 and K a multiple of 32; grid (N / 64, M / 64), 128 threads.
template <typename T>
__global__ void __launch_bounds__(kThreads) gemm_64x64(const T* a, const T* b, float* c, int M, int N, int K) {
  PETAL_DYNAMIC_SHARED(T, smem);
  const int tid = static_cast<int>(threadIdx.x), lane = tid % 32, warp = tid / 32;
  const int m0 = static_cast<int>(blockIdx.y) * kBlockM, n0 = static_cast<int>(blockIdx.x) * kBlockN;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  (void)M;

  auto load_stage = [&](int stage, int k0) {
    T* as = smem + stage * kStageElems;
    T* bs = as + kBlockM * kLdA;
    for (int i = 0; i < 2; ++i) {  // A: 64 rows x 4 chunks of 8
      const int chunk = tid + kThreads * i, row = chunk / 4, col = 8 * (chunk % 4);
      ptx::cp_async_cg_16(as + row * kLdA + col, a + static_cast<size_t>(m0 + row) * K + k0 + col);
    }
    for (int i = 0; i < 2; ++i) {  // B: 32 rows x 8 chunks of 8
      const int chunk = tid + kThreads * i, row = chunk / 8, col = 8 * (chunk % 8);
      ptx::cp_async_cg_16(bs + row * kLdB + col, b + static_cast<size_t>(k0 + row) * N + n0 + col);
    }
  };

  float acc[2][4][4];
  for (int mi = 0; mi < 2; ++mi)
    for (int ni = 0; ni < 4; ++ni)
      for (int i = 0; i < 4; ++i) acc[mi][ni][i] = 0.0f;

  const int k_tiles = K / kBlockK;
  load_stage(0, 0);
  ptx::cp_async_commit_group();
  for (int kt = 0; kt < k_tiles; ++kt) {
    if (kt + 1 < k_tiles) load_stage((kt + 1) % 2, (kt + 1) * kBlockK);
    ptx::cp_async_commit_group();  // possibly empty: keeps "all but the newest group" = stage kt
    ptx::cp_async_wait_group<1>();
    __syncthreads();
    const T* as = smem + (kt % 2) * kStageElems;
    const T* bs = as + kBlockM * kLdA;
PETAL_PTX_TEST_UNROLL
    for (int kk = 0; kk < kBlockK; kk += 16) {
      uint32_t af[2][4], bf[4][2];
PETAL_PTX_TEST_UNROLL
      for (int mi = 0; mi < 2; ++mi)
        ptx::ldmatrix_x4(af[mi], as + (wm + mi * 16 + lane % 8 + 8 * ((lane / 8) % 2)) * kLdA + kk + 8 * (lane / 16));
PETAL_PTX_TEST_UNROLL
      for (int nj = 0; nj < 2; ++nj) {
        // Matrices: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15).
        uint32_t r[4];
        ptx::ldmatrix_x4_trans(r, bs + (kk + lane % 8 + 8 * ((lane / 8) % 2)) * kLdB + wn + nj * 16 + 8 * (lane / 16));
        bf[2 * nj][0] = r[0];
        bf[2 * nj][1] = r[1];
        bf[2 * nj + 1][0] = r[2];
        bf[2 * nj + 1][1] = r[3];
      }
PETAL_PTX_TEST_UNROLL
      for (int mi = 0; mi < 2; ++mi)
PETAL_PTX_TEST_UNROLL
        for (int ni = 0; ni < 4; ++ni) mma_tile<T>(acc[mi][ni], af[mi], bf[ni], acc[mi][ni]);
    }
    __syncthreads();  // the stage is overwritten by the next iteration's loads
  }

PETAL_PTX_TEST_UNROLL
  for (int mi = 0; mi < 2; ++mi)
PETAL_PTX_TEST_UNROLL
    for (int ni = 0; ni < 4; ++ni)
PETAL_PTX_TEST_UNROLL
      for (int i = 0; i < 4; ++i) {
        const auto rc = ptx::layout::mma_c_row_col(lane, i);
        c[static_cast<size_t>(m0 + wm + mi * 16 + rc.row) * N + n0 + wn + ni * 8 + rc.col] = acc[mi][ni][i];
      }
}

}  // namespace petal::ptx_test
