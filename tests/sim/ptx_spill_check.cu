// The PTX-wrapper test kernels (tests/sim/ptx_test_kernels.cuh) compiled by nvcc for the GPU:
// explicit instantiations for bf16 and f16, so ptxas reports their registers and spills
// (tests/sim/ptx_spill_check.cmake fails on any spill). Never launched.
#include "tests/sim/ptx_test_kernels.cuh"

namespace petal::ptx_test {
template __global__ void mma_tile_16x8x16<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*, const float*,
                                                         float*);
template __global__ void mma_tile_16x8x16<__half>(const __half*, const __half*, const float*, float*);
template __global__ void gemm_64x64<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*, float*, int, int, int);
template __global__ void gemm_64x64<__half>(const __half*, const __half*, float*, int, int, int);
}  // namespace petal::ptx_test
