// patch_embed: the ViT patch embedding, a conv with kernel = stride = P, beside its
// backward rule. The patch_unfold kernel lays x [B, C, H, W] out as patches
// [B*L, C*P*P] (L = (H/P)*(W/P)), and one backend GEMM multiplies them by the weight seen
// as [D, C*P*P] (transposed by a flag, not a copy); the bias is fused into that GEMM by
// pre-filling the output with it and running with beta = 1.
// Backward from dy [B*L, D]: dpatches = dy W (GEMM) folded back into dx by patch_fold,
// dW = dy^T patches (GEMM over all B*L tokens), dbias = sum of dy over tokens.
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include "core/src/internal.h"

namespace petal {

namespace {

// C[m, n] = op(A) op(B) + beta C for contiguous row-major operands (as stored: A is
// m x k, or k x m when trans_a; B is k x n, or n x k when trans_b).
void gemm_contiguous(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b, Tensor& c, int64_t m, int64_t n,
                     int64_t k, double beta) {
  kernels::GemmArgs g;
  g.dtype = c.dtype();
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a.data_ptr();
  g.trans_a = trans_a;
  g.lda = std::max<int64_t>(1, trans_a ? m : k);
  g.b = b.data_ptr();
  g.trans_b = trans_b;
  g.ldb = std::max<int64_t>(1, trans_b ? k : n);
  g.c = c.data_ptr();
  g.ldc = std::max<int64_t>(1, n);
  g.beta = beta;
  detail::backend_of(c).gemm(g);
}

}  // namespace

Tensor patch_embed(const Tensor& x_arg, const Tensor& weight_arg, const Tensor& bias_arg) {
  const char* op = "patch_embed";
  const std::vector<Tensor> cast = autocast_inputs(op, {x_arg, weight_arg, bias_arg});  // compute dtype (autocast.h)
  const Tensor &x_in = cast[0], &weight_in = cast[1], &bias_in = cast[2];
  detail::check_defined(op, x_in);
  detail::check_defined(op, weight_in);
  detail::check_floating(op, x_in);
  PETAL_CHECK(x_in.dim() == 4, "patch_embed: input must be [B, C, H, W], got ", shape_str(x_in.shape()));
  PETAL_CHECK(weight_in.dim() == 4 && weight_in.size(2) == weight_in.size(3) && weight_in.size(2) > 0,
              "patch_embed: weight must be [D, C, P, P], got ", shape_str(weight_in.shape()));
  const int64_t B = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  const int64_t D = weight_in.size(0), P = weight_in.size(2);
  PETAL_CHECK(weight_in.size(1) == C, "patch_embed: weight ", shape_str(weight_in.shape()), " expects ",
              weight_in.size(1), " input channels, input ", shape_str(x_in.shape()), " has ", C);
  PETAL_CHECK(H % P == 0 && W % P == 0, "patch_embed: input ", shape_str(x_in.shape()), " has H x W = ", H, " x ", W,
              ", not divisible by the patch size ", P, " of weight ", shape_str(weight_in.shape()));
  PETAL_CHECK(weight_in.dtype() == x_in.dtype(), "patch_embed: weight dtype ", dtype_name(weight_in.dtype()),
              " differs from input dtype ", dtype_name(x_in.dtype()));
  detail::check_same_device(op, x_in, weight_in);
  if (bias_in.defined()) {
    PETAL_CHECK(bias_in.shape() == Shape{D}, "patch_embed: bias ", shape_str(bias_in.shape()), " does not match [",
                D, "] of weight ", shape_str(weight_in.shape()));
    PETAL_CHECK(bias_in.dtype() == x_in.dtype(), "patch_embed: bias dtype ", dtype_name(bias_in.dtype()),
                " differs from input dtype ", dtype_name(x_in.dtype()));
    detail::check_same_device(op, x_in, bias_in);
  }

  const Tensor x = x_in.contiguous();
  const Tensor weight = weight_in.contiguous();
  const int64_t L = (H / P) * (W / P), K = C * P * P, M = B * L;
  const TensorOptions opts(x.dtype(), x.device());
  auto& backend = detail::backend_of(x);
  Tensor patches = empty({M, K}, opts);
  backend.patch_unfold(patches.data_ptr(), x.data_ptr(), x.dtype(), B, C, H, W, P);
  Tensor out = empty({B, L, D}, opts);
  if (bias_in.defined()) out.copy_(bias_in.detach());  // broadcast over tokens, then beta = 1
  if (M > 0 && D > 0) {
    if (K > 0) {
      gemm_contiguous(patches, false, weight, true, out, M, D, K, bias_in.defined() ? 1.0 : 0.0);
    } else if (!bias_in.defined()) {
      out.zero_();
    }
  }

  const bool has_bias = bias_in.defined();
  autograd::record(op, out, {x_in, weight_in, bias_in}, [patches, weight, B, C, H, W, P, L, K, M, D,
                                                          has_bias](const Tensor& g) {
    const Tensor dy = (g.dtype() == weight.dtype() ? g : g.to(weight.dtype())).contiguous();
    const TensorOptions gopts(weight.dtype(), weight.device());
    auto& be = detail::backend_of(weight);
    const bool work = M > 0 && K > 0 && D > 0;  // else the gradients are empty or zero
    Tensor dx = work ? empty({B, C, H, W}, gopts) : zeros({B, C, H, W}, gopts);
    Tensor dw = work ? empty({D, C, P, P}, gopts) : zeros({D, C, P, P}, gopts);
    if (work) {
      Tensor dpatches = empty({M, K}, gopts);
      gemm_contiguous(dy, false, weight, false, dpatches, M, K, D, 0.0);
      be.patch_fold(dx.data_ptr(), dpatches.data_ptr(), weight.dtype(), B, C, H, W, P);
      gemm_contiguous(dy, true, patches, false, dw, D, K, M, 0.0);
    }
    Tensor db = has_bias ? sum(dy.reshape({M, D}), {0}) : Tensor();
    return std::vector<Tensor>{dx, dw, db};
  });
  return out;
}

}  // namespace petal
