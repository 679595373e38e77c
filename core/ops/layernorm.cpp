// layer_norm over the last dim, beside its backward rule. x (any shape [..., D]) is made
// contiguous and seen as [rows, D]; the fused kernel writes y and saves the per-row mean
// and rstd (f64 for f64 inputs, else f32), which the backward kernel reuses to produce
// dx and (when weight/bias take part) dweight/dbias in one call.
// Under autocast (autocast_active) the op computes in f32 with f32 parameters (16-bit ones are
// cast through the cast cache), reads x as it comes when it is f32 or the autocast dtype (any
// other 16-bit x is cast to f32) and writes y in the autocast dtype: the f32 residual stream
// feeds the bf16 Linear after it with no cast either way, forward or backward. dx arrives in
// x's dtype, dweight/dbias in f32.
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
  detail::check_defined(op, x_arg);
  DType low = DType::bf16;
  const bool mixed = autocast_active(x_arg.device().type, &low) &&
                     (x_arg.dtype() == DType::f32 || x_arg.dtype() == DType::bf16 || x_arg.dtype() == DType::f16);
  Tensor x_in = x_arg, weight = weight_arg, bias = bias_arg;
  if (mixed) {
    const std::vector<Tensor> params = autocast_inputs(op, {weight_arg, bias_arg});  // 16-bit -> f32 (cached)
    weight = params[0];
    bias = params[1];
    if (x_arg.dtype() != DType::f32 && x_arg.dtype() != low) x_in = autocast_inputs(op, {x_arg})[0];  // -> f32
  }
  detail::check_floating(op, x_in);
  PETAL_CHECK(x_in.dim() >= 1, "layer_norm: input must have at least one dim, got a scalar");
  const int64_t D = x_in.size(-1);
  const DType param_dtype = mixed ? DType::f32 : x_in.dtype();
  const kernels::LayerNormDTypes dtypes(x_in.dtype(), mixed ? low : x_in.dtype(), param_dtype);
  for (const auto& [name, p] : {std::pair<const char*, const Tensor*>{"weight", &weight}, {"bias", &bias}}) {
    if (!p->defined()) continue;
    PETAL_CHECK(p->shape() == Shape{D}, "layer_norm: ", name, " ", shape_str(p->shape()),
                " does not match the normalized dim ", D, " of input ", shape_str(x_in.shape()));
    if (mixed)
      PETAL_CHECK(p->dtype() == DType::f32, "layer_norm: ", name, " dtype ", dtype_name(p->dtype()),
                  " under autocast must be float32 or 16-bit (input ", dtype_name(x_in.dtype()), ")");
    else
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
  Tensor y = empty(x.shape(), TensorOptions(dtypes.y, x.device()));
  Tensor mean = empty({rows}, stats_opts), rstd = empty({rows}, stats_opts);
  if (rows > 0)
    detail::backend_of(x).layer_norm_forward(y.data_ptr(), mean.data_ptr(), rstd.data_ptr(), x.data_ptr(),
                                             w.defined() ? w.data_ptr() : nullptr,
                                             b.defined() ? b.data_ptr() : nullptr, dtypes, rows, D, eps);

  const bool want_w = weight.defined() && weight.requires_grad();
  const bool want_b = bias.defined() && bias.requires_grad();
  autograd::record(op, y, {x_in, weight, bias}, [x, w, mean, rstd, rows, D, want_w, want_b, dtypes](const Tensor& g) {
    const Tensor dy = contiguous_as(g, dtypes.y);
    Tensor dx = empty(x.shape(), TensorOptions(dtypes.x, x.device()));
    const TensorOptions popts(dtypes.param, x.device());
    Tensor dw = want_w ? empty({D}, popts) : Tensor();
    Tensor db = want_b ? empty({D}, popts) : Tensor();
    if (D > 0)
      detail::backend_of(x).layer_norm_backward(dx.data_ptr(), want_w ? dw.data_ptr() : nullptr,
                                                want_b ? db.data_ptr() : nullptr, dy.data_ptr(), x.data_ptr(),
                                                mean.data_ptr(), rstd.data_ptr(),
                                                w.defined() ? w.data_ptr() : nullptr, dtypes, rows, D);
    return std::vector<Tensor>{dx, dw, db};
  });
  return y;
}

}  // namespace petal
