// Fused Linear (+ GELU): y = act(x W^T + bias), keeping pre = x W^T + bias in aux for the
// backward. On a GPU the GEMM carries what cuBLASLt's epilogues can do (kernels/cuda/
// gemm_epilogue.h decides): BIAS, GELU_AUX_BIAS (tanh GELU) in the forward, BGRADB (the
// bias gradient) in the dW GEMM of the backward, so a Linear's forward is one kernel and its
// bias gradient needs no column reduction. What the epilogue cannot do (the erf GELU, a
// problem cuBLASLt has no epilogue algorithm for, every case on the simulator) runs in the
// two kernels below: linear_bias_act_kernel after the plain GEMM (bias, activation, aux) and
// linear_act_backward_kernel (dpre = dy * gelu'(pre)) before the backward GEMMs; the bias
// gradient then comes from the tiled column reduction of reduce.cu. Math in float for
// f32/bf16/f16, double for f64, with the elementwise kernels' GELU formulas.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/gemm_epilogue.h"
#include "kernels/cuda/runtime.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kGeluCoef = 0.044715;

template <typename A>
__device__ inline A gelu_apply(LinearActivation act, A x) {
  if (act == LinearActivation::GeluErf) return A(0.5) * x * (A(1) + dmath::erf(x * A(kSqrt1_2)));
  return A(0.5) * x * (A(1) + dmath::tanh(A(kSqrt2OverPi) * (x + A(kGeluCoef) * x * x * x)));
}

template <typename A>
__device__ inline A gelu_derivative(LinearActivation act, A x) {
  if (act == LinearActivation::GeluErf) {
    const A cdf = A(0.5) * (A(1) + dmath::erf(x * A(kSqrt1_2)));
    const A pdf = A(kInvSqrt2Pi) * dmath::exp(A(-0.5) * x * x);
    return cdf + x * pdf;
  }
  const A x2 = x * x;
  const A t = dmath::tanh(A(kSqrt2OverPi) * (x + A(kGeluCoef) * x2 * x));
  const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCoef) * x2);
  return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du;
}

// Each thread owns one column j (its bias value stays in a register) and walks the rows
// r = blockIdx.y, blockIdx.y + gridDim.y, ...: no division per element, coalesced rows.
// pre holds the GEMM result; with act, pre = (pre + bias) is written back (when bias) and
// y = act(pre); without act, pre is y and y = pre + bias in place.
template <typename T>
static __global__ void linear_bias_act_kernel(T* y, T* pre, const T* bias, int64_t m, int64_t n,
                                              LinearActivation act) {
  using A = acc_t<T>;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < n; j += int64_t(gridDim.x) * blockDim.x) {
    const A b = bias != nullptr ? A(to_acc(bias[j])) : A(0);
    for (int64_t r = blockIdx.y; r < m; r += gridDim.y) {
      const int64_t i = r * n + j;
      const A v = A(to_acc(pre[i])) + b;
      if (act == LinearActivation::None) {
        y[i] = from_acc<T>(v);
      } else {
        if (bias != nullptr) pre[i] = from_acc<T>(v);
        y[i] = from_acc<T>(gelu_apply(act, v));
      }
    }
  }
}

// dpre = dy * act'(pre), elementwise over m * n (grid-stride).
template <typename T>
static __global__ void linear_act_backward_kernel(T* dpre, const T* dy, const T* pre, int64_t total,
                                                  LinearActivation act) {
  using A = acc_t<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    dpre[i] = from_acc<T>(A(to_acc(dy[i])) * gelu_derivative(act, A(to_acc(pre[i]))));
}

#ifdef PETAL_SIM_COMPILE
constexpr bool kHasCublasLt = false;
#else
constexpr bool kHasCublasLt = true;
#endif

GemmArgs gemm_args(DType dtype, int64_t m, int64_t n, int64_t k, const void* a, bool trans_a, const void* b,
                   bool trans_b, void* c) {
  GemmArgs g;
  g.dtype = dtype;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.trans_a = trans_a;
  g.lda = std::max<int64_t>(1, trans_a ? m : k);
  g.b = b;
  g.trans_b = trans_b;
  g.ldb = std::max<int64_t>(1, trans_b ? k : n);
  g.c = c;
  g.ldc = std::max<int64_t>(1, n);
  return g;
}

// C = op(A) op(B), or zeros when the reduced extent is empty.
void gemm_or_zero(const GemmArgs& g) {
  if (g.m == 0 || g.n == 0) return;
  if (g.k == 0) {
    rt_memset(g.c, 0, static_cast<size_t>(g.m * g.n) * dtype_size(g.dtype));  // +0.0 in every float dtype
    return;
  }
  rt_gemm(g);
}

}  // namespace

void CudaBackend::linear_forward(const LinearArgs& a) {
  if (a.m == 0 || a.n == 0) return;
  Stream stream = activate();
  LinearForwardPlan plan = linear_forward_plan(a, kHasCublasLt);
  GemmArgs g = gemm_args(a.dtype, a.m, a.n, a.k, a.x, false, a.w, true, plan.gemm_into_aux ? a.aux : a.y);
  bool fused = false;
  if (plan.epilogue != GemmEpilogue::None)
    fused = rt_gemm_epilogue(g, plan.epilogue, const_cast<void*>(a.bias), a.aux, a.n);
  if (plan.epilogue != GemmEpilogue::None && !fused) {  // no algorithm for the epilogue: petal's kernels
    plan = linear_forward_fallback(a);
    g.c = plan.gemm_into_aux ? a.aux : a.y;
  }
  if (!fused) gemm_or_zero(g);
  if (!plan.kernel()) return;
  const LinearActivation act = plan.kernel_applies_act ? a.act : LinearActivation::None;
  const void* bias = plan.kernel_adds_bias ? a.bias : nullptr;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>((a.n + kBlockSize - 1) / kBlockSize, 1024)),
                  static_cast<unsigned>(std::min<int64_t>(a.m, std::max<int64_t>(1, kMaxGridBlocks / 8))));
  dispatch_floating(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    PETAL_LAUNCH(linear_bias_act_kernel<T>, grid, kBlockSize, 0, stream, static_cast<T*>(a.y),
                 static_cast<T*>(g.c), static_cast<const T*>(bias), a.m, a.n, act);
  });
}

void CudaBackend::linear_backward(const LinearArgs& a, const void* dy, void* dx, void* dw, void* dbias) {
  Stream stream = activate();
  const LinearBackwardPlan plan = linear_backward_plan(a, kHasCublasLt, dw != nullptr, dbias);
  const int64_t total = a.m * a.n;
  const size_t es = dtype_size(a.dtype);
  void* buffer = nullptr;
  const void* dpre = dy;
  if (plan.act_kernel && total > 0) {
    buffer = allocate(static_cast<size_t>(total) * es);
    dispatch_floating(a.dtype, [&](auto tag) {
      using T = typename decltype(tag)::type;
      PETAL_LAUNCH(linear_act_backward_kernel<T>, grid_for(total), kBlockSize, 0, stream, static_cast<T*>(buffer),
                   static_cast<const T*>(dy), static_cast<const T*>(a.aux), total, a.act);
    });
    dpre = buffer;
  }
  try {
    if (dx != nullptr) gemm_or_zero(gemm_args(a.dtype, a.m, a.k, a.n, dpre, false, a.w, false, dx));
    bool reduce_bias = plan.reduce_bias;
    if (dw != nullptr) {
      const GemmArgs g = gemm_args(a.dtype, a.n, a.k, a.m, dpre, true, a.x, false, dw);
      const bool fused = plan.dw_bgradb && rt_gemm_epilogue(g, GemmEpilogue::BGradB, dbias, nullptr, 0);
      if (!fused) gemm_or_zero(g);
      if (plan.dw_bgradb && !fused) reduce_bias = true;  // no BGRADB algorithm: the column reduction
    }
    if (reduce_bias && dbias != nullptr && a.n > 0) {
      if (a.m == 0) {
        rt_memset(dbias, 0, static_cast<size_t>(a.n) * es);
      } else {
        View out;  // [n]
        out.data = dbias;
        out.dtype = a.dtype;
        out.ndim = 1;
        out.shape[0] = a.n;
        out.strides[0] = 1;
        View in;  // dpre seen as [n, m] (columns kept, rows reduced)
        in.data = const_cast<void*>(dpre);
        in.dtype = a.dtype;
        in.ndim = 2;
        in.shape[0] = a.n;
        in.shape[1] = a.m;
        in.strides[0] = 1;
        in.strides[1] = a.n;
        reduce(ReduceOp::Sum, out, in, 1);
      }
    }
  } catch (...) {
    if (buffer != nullptr) deallocate(buffer);
    throw;
  }
  if (buffer != nullptr) deallocate(buffer);  // stream-ordered: after the GEMMs that read it
}

}  // namespace petal::kernels::PETAL_CUDA_NS
