// The PTX-wrapper test kernels (tests/sim/ptx_test_kernels.cuh) compiled by nvcc for the GPU:
// explicit instantiations for bf16 and f16, so ptxas reports their registers and spills
// (tests/sim/ptx_spill_check.cmake fails on any spill), plus one kernel that issues every
// wrapper of kernels/cuda/ptx.cuh so that ptxas assembles each instruction. Never launched.
#include "tests/sim/ptx_test_kernels.cuh"

namespace petal::ptx_test {
template __global__ void mma_tile_16x8x16<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*, const float*,
                                                         float*);
template __global__ void mma_tile_16x8x16<__half>(const __half*, const __half*, const float*, float*);
template __global__ void gemm_64x64<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*, float*, int, int, int);
template __global__ void gemm_64x64<__half>(const __half*, const __half*, float*, int, int, int);

// Every ldmatrix variant and both cp.async waits, results summed so none is dead code.
__global__ void every_wrapper(const uint4* src, uint32_t* out) {
  __shared__ __align__(16) uint16_t s[32 * 8];
  const int lane = static_cast<int>(threadIdx.x);
  ptx::cp_async_cg_16(s + 8 * lane, src + lane);
  ptx::cp_async_wait_all();
  __syncwarp();
  const uint16_t* row = s + 8 * lane;
  uint32_t r1[1], r2[2], r4[4], sum = 0;
  ptx::ldmatrix_x1(r1, row);
  sum += r1[0];
  ptx::ldmatrix_x2(r2, row);
  sum += r2[0] + r2[1];
  ptx::ldmatrix_x4(r4, row);
  sum += r4[0] + r4[1] + r4[2] + r4[3];
  ptx::ldmatrix_x1_trans(r1, row);
  sum += r1[0];
  ptx::ldmatrix_x2_trans(r2, row);
  sum += r2[0] + r2[1];
  ptx::ldmatrix_x4_trans(r4, row);
  sum += r4[0] + r4[1] + r4[2] + r4[3];
  out[lane] = sum;
}
}  // namespace petal::ptx_test
