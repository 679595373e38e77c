// fused_mlp: fc2(act(fc1(x))) as one backend op (Backend::mlp_forward / mlp_backward) beside
// its backward rule. The forward keeps fc1's pre-activation (aux) and the activation (hidden,
// fc2's input); the backward hands dy, aux and hidden to the backend, which returns dx, dW1,
// db1, dW2 and db2. By default a backend runs the two fused Linears; cuda's backward puts fc1's
// activation and bias gradients in the epilogue of fc2's dX GEMM (DGELU_BGRAD, kernels/cuda/mlp.cu).
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include "core/src/internal.h"

namespace petal {

namespace {

kernels::LinearActivation parse_mlp_activation(const std::string& a) {
  if (a == "none") return kernels::LinearActivation::None;
  if (a == "gelu") return kernels::LinearActivation::GeluErf;
  if (a == "gelu_tanh") return kernels::LinearActivation::GeluTanh;
  PETAL_FAIL("fused_mlp: unknown activation '", a, "' (expected gelu, gelu_tanh or none)");
}

void check_weight(const Tensor& x, const Tensor& w, const char* name) {
  detail::check_defined("fused_mlp", w);
  PETAL_CHECK(w.dim() == 2, "fused_mlp: ", name, " must be [out, in], got ", shape_str(w.shape()));
  PETAL_CHECK(w.dtype() == x.dtype(), "fused_mlp: ", name, " dtype ", dtype_name(w.dtype()), " differs from input dtype ",
              dtype_name(x.dtype()));
  detail::check_same_device("fused_mlp", x, w);
}

void check_bias(const Tensor& x, const Tensor& b, int64_t n, const char* name, const Tensor& w, const char* wname) {
  if (!b.defined()) return;
  PETAL_CHECK(b.dim() == 1 && b.size(0) == n, "fused_mlp: ", name, " ", shape_str(b.shape()), " does not match ", wname,
              " ", shape_str(w.shape()));
  PETAL_CHECK(b.dtype() == x.dtype(), "fused_mlp: ", name, " dtype ", dtype_name(b.dtype()), " differs from input dtype ",
              dtype_name(x.dtype()));
  detail::check_same_device("fused_mlp", x, b);
}

// The MlpArgs fields the forward and the backward share (dtype from w1: x is cast to it; the
// forward adds the biases and y).
kernels::MlpArgs mlp_args(const Tensor& x, const Tensor& w1, const Tensor& w2, const Tensor& aux, const Tensor& hidden,
                          kernels::LinearActivation act, int64_t m, int64_t k, int64_t h, int64_t n) {
  kernels::MlpArgs a;
  a.dtype = w1.dtype();
  a.m = m;
  a.k = k;
  a.h = h;
  a.n = n;
  a.act = act;
  a.x = x.data_ptr();
  a.w1 = w1.data_ptr();
  a.w2 = w2.data_ptr();
  a.aux = aux.defined() ? aux.data_ptr() : nullptr;
  a.hidden = hidden.data_ptr();
  return a;
}

}  // namespace

Tensor fused_mlp(const Tensor& x_arg, const Tensor& w1_arg, const Tensor& b1_arg, const Tensor& w2_arg,
                 const Tensor& b2_arg, const std::string& activation) {
  const char* op = "linear";  // autocast's name for it (lower precision), as fused_linear
  const kernels::LinearActivation act = parse_mlp_activation(activation);
  const std::vector<Tensor> cast = autocast_inputs(op, {x_arg, w1_arg, b1_arg, w2_arg, b2_arg});
  const Tensor &x_in = cast[0], &w1_in = cast[1], &b1_in = cast[2], &w2_in = cast[3], &b2_in = cast[4];
  detail::check_defined("fused_mlp", x_in);
  detail::check_floating("fused_mlp", x_in);
  check_weight(x_in, w1_in, "fc1 weight");
  check_weight(x_in, w2_in, "fc2 weight");
  const int64_t H = w1_in.size(0), K = w1_in.size(1), N = w2_in.size(0);
  PETAL_CHECK(x_in.dim() >= 1 && x_in.size(-1) == K, "fused_mlp: input ", shape_str(x_in.shape()),
              " does not match fc1 weight ", shape_str(w1_in.shape()), " (last dim must be ", K, ")");
  PETAL_CHECK(w2_in.size(1) == H, "fused_mlp: fc2 weight ", shape_str(w2_in.shape()), " does not match fc1 weight ",
              shape_str(w1_in.shape()), " (fc2's in must be fc1's out, ", H, ")");
  check_bias(x_in, b1_in, H, "fc1 bias", w1_in, "fc1 weight");
  check_bias(x_in, b2_in, N, "fc2 bias", w2_in, "fc2 weight");

  Shape out_shape = x_in.shape();
  out_shape.back() = N;
  int64_t M = 1;
  for (int64_t d = 0; d + 1 < x_in.dim(); ++d) M *= x_in.size(d);
  const Tensor x = x_in.contiguous().reshape({M, K});
  const Tensor w1 = w1_in.contiguous(), w2 = w2_in.contiguous();
  const Tensor b1 = b1_in.defined() ? b1_in.contiguous() : Tensor();
  const Tensor b2 = b2_in.defined() ? b2_in.contiguous() : Tensor();
  const TensorOptions opts(x.dtype(), x.device());
  Tensor hidden = empty({M, H}, opts);
  Tensor aux = act != kernels::LinearActivation::None ? empty({M, H}, opts) : Tensor();
  Tensor y = empty({M, N}, opts);
  kernels::MlpArgs args = mlp_args(x, w1, w2, aux, hidden, act, M, K, H, N);
  args.b1 = b1.defined() ? b1.data_ptr() : nullptr;
  args.b2 = b2.defined() ? b2.data_ptr() : nullptr;
  args.y = y.data_ptr();
  detail::backend_of(x).mlp_forward(args);
  Tensor out = y.reshape(out_shape);
  const bool has_b1 = b1_in.defined(), has_b2 = b2_in.defined();
  autograd::record(
      "fused_mlp", out, {x_in, w1_in, b1_in, w2_in, b2_in},
      [x, w1, w2, aux, hidden, act, M, K, H, N, has_b1, has_b2, x_shape = x_in.shape()](const Tensor& g) {
        const Tensor dy = (g.dtype() == w1.dtype() ? g : g.to(w1.dtype())).contiguous();
        const TensorOptions gopts(w1.dtype(), w1.device());
        Tensor dx = empty({M, K}, gopts);
        Tensor dw1 = empty({H, K}, gopts), dw2 = empty({N, H}, gopts);
        Tensor db1 = has_b1 ? empty({H}, gopts) : Tensor();
        Tensor db2 = has_b2 ? empty({N}, gopts) : Tensor();
        const kernels::MlpArgs a = mlp_args(x, w1, w2, aux, hidden, act, M, K, H, N);
        detail::backend_of(w1).mlp_backward(a, dy.data_ptr(), dx.data_ptr(), dw1.data_ptr(),
                                            has_b1 ? db1.data_ptr() : nullptr, dw2.data_ptr(),
                                            has_b2 ? db2.data_ptr() : nullptr);
        return std::vector<Tensor>{dx.reshape(x_shape), dw1, db1, dw2, db2};
      });
  return out;
}

}  // namespace petal
