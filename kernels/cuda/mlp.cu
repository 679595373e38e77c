// Fused MLP (fc1 -> GELU -> fc2) on cuda and sim. The forward is Backend::mlp_forward's
// composition of the two fused Linears, which on a GPU already carry cuBLASLt's epilogues
// (linear.cu: GELU_AUX_BIAS on fc1 for the tanh GELU, keeping its input in aux; BIAS on fc2).
// The backward is what fusing across the two layers buys: fc2's dX GEMM (dhidden = dy W2)
// is the GEMM in front of fc1's activation gradient, so it carries DGELU_BGRAD, giving
// dpre = (dy W2) * gelu'(aux) and fc1's bias gradient with no elementwise kernel and no
// column reduction; fc2's dW GEMM keeps BGRADB (its bias gradient), fc1's dW1 and dx GEMMs
// run plain. Where cuBLASLt cannot (gemm_epilogue.h's mlp_backward_plan: erf GELU, f64,
// alignment, h % 8, the simulator) or has no algorithm for the problem (rt_gemm_epilogue
// false), the backward is Backend::mlp_backward's composition (linear_backward twice).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/gemm_epilogue.h"
#include "kernels/cuda/runtime.h"

namespace petal::kernels::PETAL_CUDA_NS {

void CudaBackend::mlp_backward(const MlpArgs& a, const void* dy, void* dx, void* dw1, void* db1, void* dw2,
                               void* db2) {
  const MlpBackwardPlan plan = mlp_backward_plan(a, rt_lt_epilogues(), db1);
  if (plan.dhidden_epilogue == GemmEpilogue::None || a.m == 0 || a.h == 0 || a.n == 0) {
    Backend::mlp_backward(a, dy, dx, dw1, db1, dw2, db2);
    return;
  }
  activate();
  // fc2's weight and bias gradients: dW2 = dy^T hidden with BGRADB giving db2 (linear.cu).
  linear_backward(a.fc2(), dy, nullptr, dw2, db2);
  // fc2's dX GEMM, row-major dpre [m, h] = dy [m, n] W2 [n, h]; in cuBLASLt's column-major view
  // D is h x m with leading dimension h, the layout of fc1's aux (the forward's GELU input)
  // and of the bias gradient's length h (D's rows).
  void* dpre = allocate(static_cast<size_t>(a.m * a.h) * dtype_size(a.dtype));
  try {
    GemmArgs g;
    g.dtype = a.dtype;
    g.m = a.m;
    g.n = a.h;
    g.k = a.n;
    g.a = dy;
    g.lda = a.n;
    g.b = a.w2;
    g.ldb = a.h;
    g.c = dpre;
    g.ldc = a.h;
    if (rt_gemm_epilogue(g, plan.dhidden_epilogue, db1, a.aux, a.h)) {
      // dpre and db1 are done: fc1's dW1 = dpre^T x and dx = dpre W1, no activation left.
      LinearArgs fc1 = a.fc1();
      fc1.act = LinearActivation::None;
      fc1.aux = nullptr;
      linear_backward(fc1, dpre, dx, dw1, nullptr);
    } else {
      // No algorithm for the epilogue: the plain GEMM gives dhidden, fc1's linear_backward the rest.
      rt_gemm(g);
      linear_backward(a.fc1(), dpre, dx, dw1, db1);
    }
  } catch (...) {
    deallocate(dpre);
    throw;
  }
  deallocate(dpre);  // stream-ordered: after the GEMMs that read it
}

}  // namespace petal::kernels::PETAL_CUDA_NS
