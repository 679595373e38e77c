// fused_linear: act(x W^T + bias) as one backend op (kernels/*/linear.*) beside its backward
// rule. The forward keeps the pre-activation (aux) when there is an activation; the backward
// hands dy and aux to the backend, which computes dpre = dy * act'(aux), dx = dpre W,
// dW = dpre^T x and dbias = the column sums of dpre (on cuda the bias and the tanh GELU ride
// in the forward GEMM's epilogue and dbias in the dW GEMM's, see kernels/cuda/gemm_epilogue.h).
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include "core/src/internal.h"

namespace petal {

namespace {

kernels::LinearActivation parse_activation(const std::string& a) {
  if (a == "none") return kernels::LinearActivation::None;
  if (a == "gelu") return kernels::LinearActivation::GeluErf;
  if (a == "gelu_tanh") return kernels::LinearActivation::GeluTanh;
  PETAL_FAIL("fused_linear: unknown activation '", a, "' (expected none, gelu or gelu_tanh)");
}

}  // namespace

Tensor fused_linear(const Tensor& x_arg, const Tensor& weight_arg, const Tensor& bias_arg,
                    const std::string& activation) {
  const char* op = "linear";  // autocast's name for it (lower precision)
  const kernels::LinearActivation act = parse_activation(activation);
  const std::vector<Tensor> cast = autocast_inputs(op, {x_arg, weight_arg, bias_arg});
  const Tensor &x_in = cast[0], &weight_in = cast[1], &bias_in = cast[2];
  detail::check_defined(op, x_in);
  detail::check_defined(op, weight_in);
  detail::check_floating(op, x_in);
  PETAL_CHECK(weight_in.dim() == 2, "linear: weight must be [out, in], got ", shape_str(weight_in.shape()));
  PETAL_CHECK(x_in.dim() >= 1 && x_in.size(-1) == weight_in.size(1), "linear: input ", shape_str(x_in.shape()),
              " does not match weight ", shape_str(weight_in.shape()), " (last dim must be ", weight_in.size(1), ")");
  PETAL_CHECK(weight_in.dtype() == x_in.dtype(), "linear: weight dtype ", dtype_name(weight_in.dtype()),
              " differs from input dtype ", dtype_name(x_in.dtype()));
  detail::check_same_device(op, x_in, weight_in);
  const int64_t N = weight_in.size(0), K = weight_in.size(1);
  if (bias_in.defined()) {
    PETAL_CHECK(bias_in.dim() == 1 && bias_in.size(0) == N, "linear: bias ", shape_str(bias_in.shape()),
                " does not match weight ", shape_str(weight_in.shape()));
    PETAL_CHECK(bias_in.dtype() == x_in.dtype(), "linear: bias dtype ", dtype_name(bias_in.dtype()),
                " differs from input dtype ", dtype_name(x_in.dtype()));
    detail::check_same_device(op, x_in, bias_in);
  }

  Shape out_shape = x_in.shape();
  out_shape.back() = N;
  int64_t M = 1;
  for (int64_t d = 0; d + 1 < x_in.dim(); ++d) M *= x_in.size(d);
  const Tensor x = x_in.contiguous().reshape({M, K});
  const Tensor weight = weight_in.contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const TensorOptions opts(x.dtype(), x.device());
  Tensor y = empty({M, N}, opts);
  Tensor aux = act != kernels::LinearActivation::None ? empty({M, N}, opts) : Tensor();
  kernels::LinearArgs args;
  args.dtype = x.dtype();
  args.m = M;
  args.n = N;
  args.k = K;
  args.act = act;
  args.x = x.data_ptr();
  args.w = weight.data_ptr();
  args.bias = bias.defined() ? bias.data_ptr() : nullptr;
  args.y = y.data_ptr();
  args.aux = aux.defined() ? aux.data_ptr() : nullptr;
  detail::backend_of(x).linear_forward(args);
  Tensor out = y.reshape(out_shape);
  const bool has_bias = bias_in.defined();
  autograd::record(op, out, {x_in, weight_in, bias_in},
                   [x, weight, aux, act, M, N, K, has_bias, x_shape = x_in.shape()](const Tensor& g) {
                     const Tensor dy = (g.dtype() == weight.dtype() ? g : g.to(weight.dtype())).contiguous();
                     const TensorOptions gopts(weight.dtype(), weight.device());
                     Tensor dx = empty({M, K}, gopts);
                     Tensor dw = empty({N, K}, gopts);
                     Tensor db = has_bias ? empty({N}, gopts) : Tensor();
                     kernels::LinearArgs a;
                     a.dtype = weight.dtype();
                     a.m = M;
                     a.n = N;
                     a.k = K;
                     a.act = act;
                     a.x = x.data_ptr();
                     a.w = weight.data_ptr();
                     a.aux = aux.defined() ? aux.data_ptr() : nullptr;
                     detail::backend_of(weight).linear_backward(a, dy.data_ptr(), dx.data_ptr(), dw.data_ptr(),
                                                                has_bias ? db.data_ptr() : nullptr);
                     return std::vector<Tensor>{dx.reshape(x_shape), dw, db};
                   });
  return out;
}

}  // namespace petal
