// Elementwise kernels: unary ops and their derivatives, binary ops (arithmetic and
// comparisons) and where, over strided views with broadcasting (stride 0). Math is
// done in the accumulator type (float for f32/bf16/f16, double for f64); the op
// switch sits outside the row loop so each inner loop is a single vectorizable body.
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kGeluCoef = 0.044715;

// Scalar parameter converted to the compute type; integer types saturate (so clamp
// bounds of +-inf are meaningful for int tensors).
template <typename A>
inline A scalar_cast(double v) {
  if constexpr (std::is_integral_v<A>) {
    if (!(v == v)) return A(0);
    if (v <= static_cast<double>(std::numeric_limits<A>::lowest())) return std::numeric_limits<A>::lowest();
    if (v >= static_cast<double>(std::numeric_limits<A>::max())) return std::numeric_limits<A>::max();
  }
  return static_cast<A>(v);
}

template <UnaryOp op, typename A>
inline A unary_fn(A x, A alpha, A beta) {
  if constexpr (op == UnaryOp::Neg) return -x;
  if constexpr (op == UnaryOp::Abs) return x < A(0) ? -x : x;
  if constexpr (op == UnaryOp::Relu) return x > A(0) ? x : A(0);
  if constexpr (op == UnaryOp::Square) return x * x;
  if constexpr (op == UnaryOp::Clamp) return x < alpha ? alpha : (x > beta ? beta : x);
  if constexpr (op == UnaryOp::AddScalar) return x + alpha;
  if constexpr (op == UnaryOp::MulScalar) return x * alpha;
  if constexpr (op == UnaryOp::RSub) return alpha - x;
  if constexpr (std::is_floating_point_v<A>) {
    if constexpr (op == UnaryOp::Exp) return std::exp(x);
    if constexpr (op == UnaryOp::Log) return std::log(x);
    if constexpr (op == UnaryOp::Sqrt) return std::sqrt(x);
    if constexpr (op == UnaryOp::Rsqrt) return A(1) / std::sqrt(x);
    if constexpr (op == UnaryOp::Sin) return std::sin(x);
    if constexpr (op == UnaryOp::Cos) return std::cos(x);
    if constexpr (op == UnaryOp::Tanh) return std::tanh(x);
    if constexpr (op == UnaryOp::Sigmoid) return A(1) / (A(1) + std::exp(-x));
    if constexpr (op == UnaryOp::GeluErf) return A(0.5) * x * (A(1) + std::erf(x * A(kSqrt1_2)));
    if constexpr (op == UnaryOp::GeluTanh)
      return A(0.5) * x * (A(1) + std::tanh(A(kSqrt2OverPi) * (x + A(kGeluCoef) * x * x * x)));
    if constexpr (op == UnaryOp::PowScalar) return std::pow(x, alpha);
    if constexpr (op == UnaryOp::RDiv) return alpha / x;
  }
  return x;
}

// d op(x)/dx * g, given x and y = op(x).
template <UnaryOp op, typename A>
inline A unary_grad_fn(A g, A x, A y, A alpha, A beta) {
  if constexpr (op == UnaryOp::Neg) return -g;
  if constexpr (op == UnaryOp::Abs) return x > A(0) ? g : (x < A(0) ? -g : A(0));
  if constexpr (op == UnaryOp::Relu) return x > A(0) ? g : A(0);
  if constexpr (op == UnaryOp::Square) return A(2) * x * g;
  if constexpr (op == UnaryOp::Clamp) return (x >= alpha && x <= beta) ? g : A(0);
  if constexpr (op == UnaryOp::AddScalar) return g;
  if constexpr (op == UnaryOp::MulScalar) return g * alpha;
  if constexpr (op == UnaryOp::RSub) return -g;
  if constexpr (op == UnaryOp::Exp) return g * y;
  if constexpr (op == UnaryOp::Log) return g / x;
  if constexpr (op == UnaryOp::Sqrt) return g / (A(2) * y);
  if constexpr (op == UnaryOp::Rsqrt) return A(-0.5) * g * y * y * y;
  if constexpr (op == UnaryOp::Sin) return g * std::cos(x);
  if constexpr (op == UnaryOp::Cos) return -g * std::sin(x);
  if constexpr (op == UnaryOp::Tanh) return g * (A(1) - y * y);
  if constexpr (op == UnaryOp::Sigmoid) return g * y * (A(1) - y);
  if constexpr (op == UnaryOp::GeluErf) {
    A cdf = A(0.5) * (A(1) + std::erf(x * A(kSqrt1_2)));
    A pdf = A(kInvSqrt2Pi) * std::exp(A(-0.5) * x * x);
    return g * (cdf + x * pdf);
  }
  if constexpr (op == UnaryOp::GeluTanh) {
    A x2 = x * x;
    A u = A(kSqrt2OverPi) * (x + A(kGeluCoef) * x2 * x);
    A t = std::tanh(u);
    A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCoef) * x2);
    return g * (A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du);
  }
  if constexpr (op == UnaryOp::PowScalar) return g * alpha * std::pow(x, alpha - A(1));
  if constexpr (op == UnaryOp::RDiv) return -g * alpha / (x * x);
  return g;
}

template <UnaryOp op>
void run_unary(const View& out, const View& in, double alpha, double beta) {
  const View* views[2] = {&out, &in};
  dispatch_all(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, bool>) {
      return;  // core never asks for bool arithmetic
    } else {
      using A = typename Acc<T>::type;
      T* o = static_cast<T*>(out.data);
      const T* x = static_cast<const T*>(in.data);
      const A a = scalar_cast<A>(alpha), b = scalar_cast<A>(beta);
      for_each_row<2>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
        T* op_ = o + off[0];
        const T* xp = x + off[1];
        if (inc[0] == 1 && inc[1] == 1) {
          for (int64_t i = 0; i < n; ++i) op_[i] = store<T>(unary_fn<op, A>(load(xp[i]), a, b));
        } else {
          for (int64_t i = 0; i < n; ++i) op_[i * inc[0]] = store<T>(unary_fn<op, A>(load(xp[i * inc[1]]), a, b));
        }
      });
    }
  });
}

template <UnaryOp op>
void run_unary_backward(const View& gi, const View& go, const View& xv, const View& yv, double alpha, double beta) {
  const View* views[4] = {&gi, &go, &xv, &yv};
  dispatch_floating(gi.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = typename Acc<T>::type;
    T* o = static_cast<T*>(gi.data);
    const T* g = static_cast<const T*>(go.data);
    const T* x = static_cast<const T*>(xv.data);
    const T* y = static_cast<const T*>(yv.data);
    const A a = scalar_cast<A>(alpha), b = scalar_cast<A>(beta);
    for_each_row<4>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
      for (int64_t i = 0; i < n; ++i)
        o[off[0] + i * inc[0]] = store<T>(unary_grad_fn<op, A>(load(g[off[1] + i * inc[1]]), load(x[off[2] + i * inc[2]]),
                                                               load(y[off[3] + i * inc[3]]), a, b));
    });
  });
}

template <template <UnaryOp> class Runner, typename... Args>
void dispatch_unary(UnaryOp op, Args&&... args) {
#define PETAL_UNARY_CASE(name) \
  case UnaryOp::name: Runner<UnaryOp::name>::run(args...); break;
  switch (op) {
    PETAL_UNARY_CASE(Neg) PETAL_UNARY_CASE(Exp) PETAL_UNARY_CASE(Log) PETAL_UNARY_CASE(Sqrt)
    PETAL_UNARY_CASE(Rsqrt) PETAL_UNARY_CASE(Abs) PETAL_UNARY_CASE(Sin) PETAL_UNARY_CASE(Cos)
    PETAL_UNARY_CASE(Tanh) PETAL_UNARY_CASE(Sigmoid) PETAL_UNARY_CASE(Relu) PETAL_UNARY_CASE(GeluErf)
    PETAL_UNARY_CASE(GeluTanh) PETAL_UNARY_CASE(Square) PETAL_UNARY_CASE(PowScalar) PETAL_UNARY_CASE(Clamp)
    PETAL_UNARY_CASE(AddScalar) PETAL_UNARY_CASE(MulScalar) PETAL_UNARY_CASE(RSub) PETAL_UNARY_CASE(RDiv)
  }
#undef PETAL_UNARY_CASE
}

template <UnaryOp op>
struct UnaryRunner {
  static void run(const View& out, const View& in, double a, double b) { run_unary<op>(out, in, a, b); }
};
template <UnaryOp op>
struct UnaryBackwardRunner {
  static void run(const View& gi, const View& go, const View& x, const View& y, double a, double b) {
    run_unary_backward<op>(gi, go, x, y, a, b);
  }
};

template <BinaryOp op, typename A>
inline A binary_fn(A a, A b) {
  if constexpr (op == BinaryOp::Add) return a + b;
  if constexpr (op == BinaryOp::Sub) return a - b;
  if constexpr (op == BinaryOp::Mul) return a * b;
  if constexpr (op == BinaryOp::Div) return a / b;
  if constexpr (op == BinaryOp::Pow) {
    if constexpr (std::is_floating_point_v<A>) return std::pow(a, b);
    return a;  // core promotes integer pow to floating
  }
  // NaN propagates through maximum/minimum as in PyTorch.
  if constexpr (op == BinaryOp::Maximum) return (a != a) ? a : ((b != b) ? b : (a > b ? a : b));
  if constexpr (op == BinaryOp::Minimum) return (a != a) ? a : ((b != b) ? b : (a < b ? a : b));
  return a;
}

template <BinaryOp op, typename A>
inline bool compare_fn(A a, A b) {
  if constexpr (op == BinaryOp::Eq) return a == b;
  if constexpr (op == BinaryOp::Ne) return a != b;
  if constexpr (op == BinaryOp::Lt) return a < b;
  if constexpr (op == BinaryOp::Le) return a <= b;
  if constexpr (op == BinaryOp::Gt) return a > b;
  if constexpr (op == BinaryOp::Ge) return a >= b;
  return false;
}

template <BinaryOp op>
void run_binary(const View& out, const View& av, const View& bv) {
  const View* views[3] = {&out, &av, &bv};
  constexpr bool is_cmp = op >= BinaryOp::Eq;
  dispatch_all(av.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = std::conditional_t<std::is_same_v<T, bool>, int, typename Acc<T>::type>;
    using O = std::conditional_t<is_cmp, bool, T>;
    O* o = static_cast<O*>(out.data);
    const T* a = static_cast<const T*>(av.data);
    const T* b = static_cast<const T*>(bv.data);
    for_each_row<3>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
      O* op_ = o + off[0];
      const T* ap = a + off[1];
      const T* bp = b + off[2];
      if constexpr (is_cmp) {
        for (int64_t i = 0; i < n; ++i)
          op_[i * inc[0]] = compare_fn<op, A>(static_cast<A>(load(ap[i * inc[1]])), static_cast<A>(load(bp[i * inc[2]])));
      } else {
        if (inc[0] == 1 && inc[1] == 1 && inc[2] == 1) {
          for (int64_t i = 0; i < n; ++i)
            op_[i] = store<O>(binary_fn<op, A>(static_cast<A>(load(ap[i])), static_cast<A>(load(bp[i]))));
        } else if (inc[0] == 1 && inc[1] == 1 && inc[2] == 0) {
          const A bs = static_cast<A>(load(bp[0]));
          for (int64_t i = 0; i < n; ++i) op_[i] = store<O>(binary_fn<op, A>(static_cast<A>(load(ap[i])), bs));
        } else {
          for (int64_t i = 0; i < n; ++i)
            op_[i * inc[0]] =
                store<O>(binary_fn<op, A>(static_cast<A>(load(ap[i * inc[1]])), static_cast<A>(load(bp[i * inc[2]]))));
        }
      }
    });
  });
}

}  // namespace

void CpuBackend::unary(UnaryOp op, const View& out, const View& in, double alpha, double beta) {
  dispatch_unary<UnaryRunner>(op, out, in, alpha, beta);
}

void CpuBackend::unary_backward(UnaryOp op, const View& grad_in, const View& grad_out, const View& x, const View& y,
                                double alpha, double beta) {
  dispatch_unary<UnaryBackwardRunner>(op, grad_in, grad_out, x, y, alpha, beta);
}

void CpuBackend::binary(BinaryOp op, const View& out, const View& a, const View& b) {
  switch (op) {
    case BinaryOp::Add: run_binary<BinaryOp::Add>(out, a, b); break;
    case BinaryOp::Sub: run_binary<BinaryOp::Sub>(out, a, b); break;
    case BinaryOp::Mul: run_binary<BinaryOp::Mul>(out, a, b); break;
    case BinaryOp::Div: run_binary<BinaryOp::Div>(out, a, b); break;
    case BinaryOp::Pow: run_binary<BinaryOp::Pow>(out, a, b); break;
    case BinaryOp::Maximum: run_binary<BinaryOp::Maximum>(out, a, b); break;
    case BinaryOp::Minimum: run_binary<BinaryOp::Minimum>(out, a, b); break;
    case BinaryOp::Eq: run_binary<BinaryOp::Eq>(out, a, b); break;
    case BinaryOp::Ne: run_binary<BinaryOp::Ne>(out, a, b); break;
    case BinaryOp::Lt: run_binary<BinaryOp::Lt>(out, a, b); break;
    case BinaryOp::Le: run_binary<BinaryOp::Le>(out, a, b); break;
    case BinaryOp::Gt: run_binary<BinaryOp::Gt>(out, a, b); break;
    case BinaryOp::Ge: run_binary<BinaryOp::Ge>(out, a, b); break;
  }
}

void CpuBackend::where(const View& out, const View& cond, const View& av, const View& bv) {
  const View* views[4] = {&out, &cond, &av, &bv};
  dispatch_all(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = static_cast<T*>(out.data);
    const bool* c = static_cast<const bool*>(cond.data);
    const T* a = static_cast<const T*>(av.data);
    const T* b = static_cast<const T*>(bv.data);
    for_each_row<4>(views, [&](int64_t n, const int64_t* off, const int64_t* inc) {
      for (int64_t i = 0; i < n; ++i)
        o[off[0] + i * inc[0]] = c[off[1] + i * inc[1]] ? a[off[2] + i * inc[2]] : b[off[3] + i * inc[3]];
    });
  });
}

}  // namespace petal::kernels
