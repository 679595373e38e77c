// GEMM: C[b] = alpha op(A[b]) op(B[b]) + beta C[b] for row-major operands with leading
// dimensions and batch strides (stride 0 reuses one matrix). Handed to the runtime
// layer: cuBLASLt on the GPU (float32 with opt-in TF32, bf16/f16 accumulating in float,
// batched through strided layouts; cuBLAS for float64), the CPU backend's BLAS inside
// the simulator (library calls are not simulated).
#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

void CudaBackend::gemm(const GemmArgs& args) {
  if (args.batch <= 0 || args.m <= 0 || args.n <= 0) return;
  activate();
  rt_gemm(args);
}

}  // namespace petal::kernels::PETAL_CUDA_NS
