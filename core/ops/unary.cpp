// Elementwise unary ops (neg, exp, log, sqrt, rsqrt, abs, sin, cos, tanh, sigmoid,
// relu, gelu, square, clamp). The backward of each is one fused kernel
// (unary_backward) that gets the saved input and output, beside the forward here.
#include <petal/autograd.h>
#include <petal/ops.h>

#include <limits>

#include "core/src/internal.h"

namespace petal {

using kernels::UnaryOp;

namespace {

bool needs_floating(UnaryOp op) {
  switch (op) {
    case UnaryOp::Neg: case UnaryOp::Abs: case UnaryOp::Relu: case UnaryOp::Square: case UnaryOp::Clamp:
      return false;
    default:
      return true;
  }
}

Tensor unary_op(const char* name, UnaryOp op, const Tensor& x_in, double alpha = 0.0, double beta = 0.0) {
  detail::check_defined(name, x_in);
  Tensor x = x_in;
  if (needs_floating(op) && !is_floating(x.dtype())) x = x.to(DType::f32);
  PETAL_CHECK(x.dtype() != DType::b8, name, ": not supported for bool tensors (shape ", shape_str(x.shape()), ")");
  Tensor out = empty(x.shape(), TensorOptions(x.dtype(), x.device()));
  if (out.numel() > 0) detail::backend_of(out).unary(op, detail::to_view(out), detail::to_view(x), alpha, beta);
  if (autograd::needs_grad({x})) {
    Tensor xd = x.detach(), yd = out.detach();
    autograd::record(name, out, {x}, [op, xd, yd, alpha, beta](const Tensor& g) {
      Tensor gi = empty(xd.shape(), TensorOptions(g.dtype(), g.device()));
      if (gi.numel() > 0)
        detail::backend_of(gi).unary_backward(op, detail::to_view(gi), detail::to_view(g, xd.shape()),
                                              detail::to_view(xd), detail::to_view(yd), alpha, beta);
      return std::vector<Tensor>{gi};
    });
  }
  return out;
}

}  // namespace

Tensor neg(const Tensor& x) { return unary_op("neg", UnaryOp::Neg, x); }
Tensor exp(const Tensor& x) { return unary_op("exp", UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary_op("log", UnaryOp::Log, x); }
Tensor sqrt(const Tensor& x) { return unary_op("sqrt", UnaryOp::Sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary_op("rsqrt", UnaryOp::Rsqrt, x); }
Tensor abs(const Tensor& x) { return unary_op("abs", UnaryOp::Abs, x); }
Tensor sin(const Tensor& x) { return unary_op("sin", UnaryOp::Sin, x); }
Tensor cos(const Tensor& x) { return unary_op("cos", UnaryOp::Cos, x); }
Tensor tanh(const Tensor& x) { return unary_op("tanh", UnaryOp::Tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary_op("sigmoid", UnaryOp::Sigmoid, x); }
Tensor relu(const Tensor& x) { return unary_op("relu", UnaryOp::Relu, x); }
Tensor gelu(const Tensor& x, bool tanh_approximation) {
  return tanh_approximation ? unary_op("gelu", UnaryOp::GeluTanh, x) : unary_op("gelu", UnaryOp::GeluErf, x);
}
Tensor square(const Tensor& x) { return unary_op("square", UnaryOp::Square, x); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  PETAL_CHECK(!(lo > hi), "clamp: min ", lo, " is greater than max ", hi);
  return unary_op("clamp", UnaryOp::Clamp, x, lo, hi);
}
Tensor clamp_min(const Tensor& x, double lo) {
  return unary_op("clamp", UnaryOp::Clamp, x, lo, std::numeric_limits<double>::infinity());
}
Tensor clamp_max(const Tensor& x, double hi) {
  return unary_op("clamp", UnaryOp::Clamp, x, -std::numeric_limits<double>::infinity(), hi);
}

}  // namespace petal
