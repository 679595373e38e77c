// Elementwise binary ops with broadcasting and dtype promotion (add, sub, mul, div,
// pow, maximum, minimum, comparisons, where), each beside its backward rule. A
// broadcast operand's gradient is summed back to its shape (sum_to).
#include <petal/autograd.h>
#include <petal/ops.h>

#include <cmath>

#include "core/src/internal.h"

namespace petal {

using kernels::BinaryOp;

namespace {

bool is_comparison(BinaryOp op) { return op >= BinaryOp::Eq; }

// Computes op(a, b) into a fresh tensor; no autograd.
Tensor binary_kernel(const char* name, BinaryOp op, const Tensor& a_in, const Tensor& b_in, bool float_result) {
  detail::check_defined(name, a_in);
  detail::check_defined(name, b_in);
  detail::check_same_device(name, a_in, b_in);
  Shape shape = detail::broadcast_shapes(name, a_in.shape(), b_in.shape());
  DType dt = promote_types(a_in.dtype(), b_in.dtype());
  if (float_result && !is_floating(dt)) dt = DType::f32;
  Tensor a = a_in.dtype() == dt ? a_in : a_in.to(dt);
  Tensor b = b_in.dtype() == dt ? b_in : b_in.to(dt);
  Tensor out = empty(shape, TensorOptions(is_comparison(op) ? DType::b8 : dt, a.device()));
  if (out.numel() > 0)
    detail::backend_of(out).binary(op, detail::to_view(out), detail::to_view(a, shape), detail::to_view(b, shape));
  return out;
}

Tensor scalar_like(double v, const Tensor& t) {
  DType dt = t.dtype();
  if (!is_floating(dt) && v != std::floor(v)) dt = DType::f32;
  if (dt == DType::b8) dt = DType::i64;
  return full({}, v, TensorOptions(dt, t.device()));
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b_in, double alpha) {
  Tensor b = alpha == 1.0 ? b_in : mul(b_in, alpha);
  Tensor out = binary_kernel("add", BinaryOp::Add, a, b, false);
  Shape sa = a.shape(), sb = b.shape();
  autograd::record("add", out, {a, b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, sa), sum_to(g, sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b_in, double alpha) {
  Tensor b = alpha == 1.0 ? b_in : mul(b_in, alpha);
  Tensor out = binary_kernel("sub", BinaryOp::Sub, a, b, false);
  Shape sa = a.shape(), sb = b.shape();
  autograd::record("sub", out, {a, b}, [sa, sb](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, sa), sum_to(neg(g), sb)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel("mul", BinaryOp::Mul, a, b, false);
  if (autograd::needs_grad({a, b})) {
    Tensor ad = a.detach(), bd = b.detach();
    bool need_a = a.requires_grad(), need_b = b.requires_grad();
    autograd::record("mul", out, {a, b}, [ad, bd, need_a, need_b](const Tensor& g) {
      return std::vector<Tensor>{need_a ? sum_to(mul(g, bd), ad.shape()) : Tensor(),
                                 need_b ? sum_to(mul(g, ad), bd.shape()) : Tensor()};
    });
  }
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel("div", BinaryOp::Div, a, b, true);
  if (autograd::needs_grad({a, b})) {
    Tensor ad = a.detach(), bd = b.detach();
    bool need_a = a.requires_grad(), need_b = b.requires_grad();
    autograd::record("div", out, {a, b}, [ad, bd, need_a, need_b](const Tensor& g) {
      Tensor ga, gb;
      if (need_a) ga = sum_to(div(g, bd), ad.shape());
      if (need_b) gb = sum_to(neg(div(mul(g, ad), mul(bd, bd))), bd.shape());
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel("pow", BinaryOp::Pow, a, b, true);
  if (autograd::needs_grad({a, b})) {
    Tensor ad = a.detach(), bd = b.detach(), od = out.detach();
    bool need_a = a.requires_grad(), need_b = b.requires_grad();
    autograd::record("pow", out, {a, b}, [ad, bd, od, need_a, need_b](const Tensor& g) {
      Tensor ga, gb;
      if (need_a) ga = sum_to(mul(g, mul(bd, pow(ad, sub(bd, 1.0)))), ad.shape());
      if (need_b) gb = sum_to(mul(g, mul(od, log(ad))), bd.shape());
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

static Tensor min_max(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_kernel(name, op, a, b, false);
  if (autograd::needs_grad({a, b})) {
    Tensor ad = a.detach(), bd = b.detach();
    bool is_max = op == BinaryOp::Maximum;
    autograd::record(name, out, {a, b}, [ad, bd, is_max](const Tensor& g) {
      // Ties split the gradient evenly, as PyTorch does.
      Tensor wins_a = (is_max ? gt(ad, bd) : lt(ad, bd)).to(g.dtype());
      Tensor ties = eq(ad, bd).to(g.dtype());
      Tensor wa = add(wins_a, mul(ties, 0.5));
      Tensor wb = rsub(wa, 1.0);
      return std::vector<Tensor>{sum_to(mul(g, wa), ad.shape()), sum_to(mul(g, wb), bd.shape())};
    });
  }
  return out;
}
Tensor maximum(const Tensor& a, const Tensor& b) { return min_max("maximum", BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return min_max("minimum", BinaryOp::Minimum, a, b); }

Tensor add(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
Tensor sub(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
Tensor mul(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
Tensor div(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
Tensor pow(const Tensor& a, double e) { return pow(a, scalar_like(e, a)); }
Tensor rsub(const Tensor& a, double b) { return sub(scalar_like(b, a), a); }
Tensor rdiv(const Tensor& a, double b) { return div(scalar_like(b, a), a); }

#define PETAL_COMPARISON(fname, OP)                                                                          \
  Tensor fname(const Tensor& a, const Tensor& b) { return binary_kernel(#fname, BinaryOp::OP, a, b, false); } \
  Tensor fname(const Tensor& a, double b) { return binary_kernel(#fname, BinaryOp::OP, a, scalar_like(b, a), false); }
PETAL_COMPARISON(eq, Eq)
PETAL_COMPARISON(ne, Ne)
PETAL_COMPARISON(lt, Lt)
PETAL_COMPARISON(le, Le)
PETAL_COMPARISON(gt, Gt)
PETAL_COMPARISON(ge, Ge)
#undef PETAL_COMPARISON

Tensor where(const Tensor& cond_in, const Tensor& a_in, const Tensor& b_in) {
  const char* name = "where";
  detail::check_defined(name, cond_in);
  detail::check_defined(name, a_in);
  detail::check_defined(name, b_in);
  detail::check_same_device(name, cond_in, a_in);
  detail::check_same_device(name, a_in, b_in);
  Shape shape = detail::broadcast_shapes(name, detail::broadcast_shapes(name, cond_in.shape(), a_in.shape()), b_in.shape());
  DType dt = promote_types(a_in.dtype(), b_in.dtype());
  Tensor cond = cond_in.dtype() == DType::b8 ? cond_in : ne(cond_in, 0.0);
  Tensor a = a_in.dtype() == dt ? a_in : a_in.to(dt);
  Tensor b = b_in.dtype() == dt ? b_in : b_in.to(dt);
  Tensor out = empty(shape, TensorOptions(dt, a.device()));
  if (out.numel() > 0)
    detail::backend_of(out).where(detail::to_view(out), detail::to_view(cond, shape), detail::to_view(a, shape),
                                  detail::to_view(b, shape));
  if (autograd::needs_grad({a, b})) {
    Tensor cd = cond.detach();
    Shape sa = a.shape(), sb = b.shape();
    autograd::record(name, out, {a, b}, [cd, sa, sb](const Tensor& g) {
      Tensor z = zeros({}, TensorOptions(g.dtype(), g.device()));
      return std::vector<Tensor>{sum_to(where(cd, g, z), sa), sum_to(where(cd, z, g), sb)};
    });
  }
  return out;
}

bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol) {
  if (a.shape() != b.shape()) return false;
  Tensor x = a.detach().to(kCPU, DType::f64).contiguous();
  Tensor y = b.detach().to(kCPU, DType::f64).contiguous();
  const double* px = x.data<double>();
  const double* py = y.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (std::isnan(px[i]) || std::isnan(py[i])) return false;
    if (std::fabs(px[i] - py[i]) > atol + rtol * std::fabs(py[i])) return false;
  }
  return true;
}

}  // namespace petal
