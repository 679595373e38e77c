// layer_norm over the last dim, beside its backward rule. x (any shape [..., D]) is made
// contiguous and seen as [rows, D]; the fused kernel writes y and saves the per-row mean
// and rstd (f64 for f64 inputs, else f32), which the backward kernel reuses to produce
// dx and (when weight/bias take part) dweight/dbias in one call.
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include "core/src/internal.h"

namespace petal {

namespace {

DType stats_dtype(DType dtype) { return dtype == DType::f64 ? DType::f64 : DType::f32; }

// t contiguous in dtype (gradients may arrive strided or in another dtype).
Tensor contiguous_as(const Tensor& t, DType dtype) {
  Tensor c = t.dtype() == dtype ? t : t.to(dtype);
  return c.contiguous();
}

}  // namespace

Tensor layer_norm(const Tensor& x_arg, const Tensor& weight_arg, const Tensor& bias_arg, double eps) {
  const char* op = "layer_norm";
  const std::vector<Tensor> cast = autocast_inputs(op, {x_arg, weight_arg, bias_arg});  // compute dtype (autocast.h)
  const Tensor &x_in = cast[0], &weight = cast[1], &bias = cast[2];
  detail::check_defined(op, x_in);
  detail::check_floating(op, x_in);
  PETAL_CHECK(x_in.dim() >= 1, "layer_norm: input must have at least one dim, got a scalar");
  const int64_t D = x_in.size(-1);
  for (const auto& [name, p] : {std::pair<const char*, const Tensor*>{"weight", &weight}, {"bias", &bias}}) {
    if (!p->defined()) continue;
    PETAL_CHECK(p->shape() == Shape{D}, "layer_norm: ", name, " ", shape_str(p->shape()),
                " does not match the normalized dim ", D, " of input ", shape_str(x_in.shape()));
    PETAL_CHECK(p->dtype() == x_in.dtype(), "layer_norm: ", name, " dtype ", dtype_name(p->dtype()),
                " differs from input dtype ", dtype_name(x_in.dtype()));
    detail::check_same_device(op, x_in, *p);
  }
  PETAL_CHECK(eps >= 0.0, "layer_norm: eps must be non-negative, got ", eps);

  const Tensor x = x_in.contiguous();
  const Tensor w = weight.defined() ? weight.contiguous() : Tensor();
  const Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  const int64_t rows = D == 0 ? 0 : x.numel() / D;
  const TensorOptions stats_opts(stats_dtype(x.dtype()), x.device());
  Tensor y = empty(x.shape(), TensorOptions(x.dtype(), x.device()));
  Tensor mean = empty({rows}, stats_opts), rstd = empty({rows}, stats_opts);
  if (rows > 0)
    detail::backend_of(x).layer_norm_forward(y.data_ptr(), mean.data_ptr(), rstd.data_ptr(), x.data_ptr(),
                                             w.defined() ? w.data_ptr() : nullptr,
                                             b.defined() ? b.data_ptr() : nullptr, x.dtype(), rows, D, eps);

  const bool want_w = weight.defined() && weight.requires_grad();
  const bool want_b = bias.defined() && bias.requires_grad();
  autograd::record(op, y, {x_in, weight, bias}, [x, w, mean, rstd, rows, D, want_w, want_b](const Tensor& g) {
    const Tensor dy = contiguous_as(g, x.dtype());
    const TensorOptions opts(x.dtype(), x.device());
    Tensor dx = empty(x.shape(), opts);
    Tensor dw = want_w ? empty({D}, opts) : Tensor();
    Tensor db = want_b ? empty({D}, opts) : Tensor();
    if (D > 0)
      detail::backend_of(x).layer_norm_backward(dx.data_ptr(), want_w ? dw.data_ptr() : nullptr,
                                                want_b ? db.data_ptr() : nullptr, dy.data_ptr(), x.data_ptr(),
                                                mean.data_ptr(), rstd.data_ptr(),
                                                w.defined() ? w.data_ptr() : nullptr, x.dtype(), rows, D);
    return std::vector<Tensor>{dx, dw, db};
  });
  return y;
}

}  // namespace petal
