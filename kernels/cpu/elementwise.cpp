// Elementwise kernels: unary ops and their derivatives, binary ops (arithmetic and
// comparisons) and where, over strided views with broadcasting (stride 0). Math is
// done in the accumulator type (float for f32/bf16/f16, double for f64); the op
// switch sits outside the row loop so each inner loop is a single vectorizable body.
// exp, tanh, sigmoid and the GELUs in float are kernels/cpu/gelu.h's branch-free
// approximations (no libm call in the loop), double keeps std::.
//
// Unit-stride f32 and bf16 rows of the ops that vectorize (every unary op but log, sqrt,
// rsqrt, sin, cos and pow; add, sub, mul, div, maximum, minimum, also with one side a
// broadcast scalar) run as row kernels in two ISA variants (kernels/cpu/isa.h), bf16
// converted with bit operations (kernels/cpu/bf16_bits.h); the rest through the plain loops,
// with the same formulas.
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernels/cpu/bf16_bits.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/loops.h"

namespace petal::kernels {

using namespace cpu;

namespace {

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
PETAL_CPU_INLINE A unary_fn(A x, A alpha, A beta) {
  if constexpr (op == UnaryOp::Neg) return -x;
  if constexpr (op == UnaryOp::Abs) return x < A(0) ? -x : x;
  if constexpr (op == UnaryOp::Relu) return x > A(0) ? x : A(0);
  if constexpr (op == UnaryOp::Square) return x * x;
  if constexpr (op == UnaryOp::Clamp) return x < alpha ? alpha : (x > beta ? beta : x);
  if constexpr (op == UnaryOp::AddScalar) return x + alpha;
  if constexpr (op == UnaryOp::MulScalar) return x * alpha;
  if constexpr (op == UnaryOp::RSub) return alpha - x;
  if constexpr (std::is_floating_point_v<A>) {
    if constexpr (op == UnaryOp::Exp) {
      if constexpr (std::is_same_v<A, float>) return exp_f(x);
      return std::exp(x);
    }
    if constexpr (op == UnaryOp::Log) return std::log(x);
    if constexpr (op == UnaryOp::Sqrt) return std::sqrt(x);
    if constexpr (op == UnaryOp::Rsqrt) return A(1) / std::sqrt(x);
    if constexpr (op == UnaryOp::Sin) return std::sin(x);
    if constexpr (op == UnaryOp::Cos) return std::cos(x);
    if constexpr (op == UnaryOp::Tanh) {
      if constexpr (std::is_same_v<A, float>) return tanh_f(x);
      return std::tanh(x);
    }
    if constexpr (op == UnaryOp::Sigmoid) {
      if constexpr (std::is_same_v<A, float>) return sigmoid_f(x);
      return A(1) / (A(1) + std::exp(-x));
    }
    if constexpr (op == UnaryOp::GeluErf) return gelu<GeluForm::Erf>(x);
    if constexpr (op == UnaryOp::GeluTanh) return gelu<GeluForm::Tanh>(x);
    if constexpr (op == UnaryOp::PowScalar) return std::pow(x, alpha);
    if constexpr (op == UnaryOp::RDiv) return alpha / x;
  }
  return x;
}

// d op(x)/dx * g, given x and y = op(x).
template <UnaryOp op, typename A>
PETAL_CPU_INLINE A unary_grad_fn(A g, A x, A y, A alpha, A beta) {
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
  if constexpr (op == UnaryOp::GeluErf) return g * gelu_grad<GeluForm::Erf>(x);
  if constexpr (op == UnaryOp::GeluTanh) return g * gelu_grad<GeluForm::Tanh>(x);
  if constexpr (op == UnaryOp::PowScalar) return g * alpha * std::pow(x, alpha - A(1));
  if constexpr (op == UnaryOp::RDiv) return -g * alpha / (x * x);
  return g;
}

template <BinaryOp op, typename A>
PETAL_CPU_INLINE A binary_fn(A a, A b) {
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

// ---- unit-stride f32 / bf16 row kernels, two ISA variants ----

// Whether the op's float formula vectorizes (no libm call): those take the row kernels.
constexpr bool unary_vectorizes(UnaryOp op) {
  return !(op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::Sin ||
           op == UnaryOp::Cos || op == UnaryOp::PowScalar);
}
constexpr bool unary_grad_vectorizes(UnaryOp op) {
  return !(op == UnaryOp::Sin || op == UnaryOp::Cos || op == UnaryOp::PowScalar);
}
constexpr bool binary_vectorizes(BinaryOp op) {
  return op == BinaryOp::Add || op == BinaryOp::Sub || op == BinaryOp::Mul || op == BinaryOp::Div ||
         op == BinaryOp::Maximum || op == BinaryOp::Minimum;
}

// Output may alias an input exactly (in-place ops): no __restrict here.
template <UnaryOp op, typename T>
PETAL_CPU_INLINE void unary_row(T* o, const T* x, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i) o[i] = row_store<T>(unary_fn<op, float>(row_load(x[i]), a, b));
}

template <UnaryOp op, typename T>
PETAL_CPU_INLINE void unary_grad_row(T* o, const T* g, const T* x, const T* y, int64_t n, float a, float b) {
  for (int64_t i = 0; i < n; ++i)
    o[i] = row_store<T>(unary_grad_fn<op, float>(row_load(g[i]), row_load(x[i]), row_load(y[i]), a, b));
}

// kScalar: 0 both rows, 1 b is one broadcast value, 2 a is.
template <BinaryOp op, typename T, int kScalar>
PETAL_CPU_INLINE void binary_row(T* o, const T* a, const T* b, int64_t n) {
  if constexpr (kScalar == 0) {
    for (int64_t i = 0; i < n; ++i) o[i] = row_store<T>(binary_fn<op, float>(row_load(a[i]), row_load(b[i])));
  } else if constexpr (kScalar == 1) {
    const float bs = row_load(b[0]);
    for (int64_t i = 0; i < n; ++i) o[i] = row_store<T>(binary_fn<op, float>(row_load(a[i]), bs));
  } else {
    const float as = row_load(a[0]);
    for (int64_t i = 0; i < n; ++i) o[i] = row_store<T>(binary_fn<op, float>(as, row_load(b[i])));
  }
}

#define PETAL_VEC_UNARY_OPS(X)                                                                          \
  X(Neg) X(Exp) X(Abs) X(Tanh) X(Sigmoid) X(Relu) X(GeluErf) X(GeluTanh) X(Square) X(Clamp) X(AddScalar) \
  X(MulScalar) X(RSub) X(RDiv)
#define PETAL_VEC_UNARY_GRAD_OPS(X) PETAL_VEC_UNARY_OPS(X) X(Log) X(Sqrt) X(Rsqrt)

template <typename T>
PETAL_CPU_INLINE void unary_row_switch(UnaryOp op, T* o, const T* x, int64_t n, float a, float b) {
#define PETAL_CASE(name) \
  case UnaryOp::name: unary_row<UnaryOp::name, T>(o, x, n, a, b); break;
  switch (op) {
    PETAL_VEC_UNARY_OPS(PETAL_CASE)
    default: break;
  }
#undef PETAL_CASE
}

template <typename T>
PETAL_CPU_INLINE void unary_grad_row_switch(UnaryOp op, T* o, const T* g, const T* x, const T* y, int64_t n, float a,
                                            float b) {
#define PETAL_CASE(name) \
  case UnaryOp::name: unary_grad_row<UnaryOp::name, T>(o, g, x, y, n, a, b); break;
  switch (op) {
    PETAL_VEC_UNARY_GRAD_OPS(PETAL_CASE)
    default: break;
  }
#undef PETAL_CASE
}

template <typename T>
PETAL_CPU_INLINE void binary_row_switch(BinaryOp op, int scalar, T* o, const T* a, const T* b, int64_t n) {
#define PETAL_CASE(name)                                                     \
  case BinaryOp::name:                                                       \
    if (scalar == 0) binary_row<BinaryOp::name, T, 0>(o, a, b, n);           \
    else if (scalar == 1) binary_row<BinaryOp::name, T, 1>(o, a, b, n);      \
    else binary_row<BinaryOp::name, T, 2>(o, a, b, n);                       \
    break;
  switch (op) {
    PETAL_CASE(Add) PETAL_CASE(Sub) PETAL_CASE(Mul) PETAL_CASE(Div) PETAL_CASE(Maximum) PETAL_CASE(Minimum)
    default: break;
  }
#undef PETAL_CASE
}

#define PETAL_ISA_WRAPPERS(T, suffix)                                                                             \
  void unary_row_##suffix##_baseline(UnaryOp op, T* o, const T* x, int64_t n, float a, float b) {                 \
    unary_row_switch<T>(op, o, x, n, a, b);                                                                       \
  }                                                                                                               \
  PETAL_CPU_AVX512 void unary_row_##suffix##_avx512(UnaryOp op, T* o, const T* x, int64_t n, float a, float b) {  \
    unary_row_switch<T>(op, o, x, n, a, b);                                                                       \
  }                                                                                                               \
  void unary_grad_row_##suffix##_baseline(UnaryOp op, T* o, const T* g, const T* x, const T* y, int64_t n, float a, \
                                          float b) {                                                              \
    unary_grad_row_switch<T>(op, o, g, x, y, n, a, b);                                                            \
  }                                                                                                               \
  PETAL_CPU_AVX512 void unary_grad_row_##suffix##_avx512(UnaryOp op, T* o, const T* g, const T* x, const T* y,     \
                                                         int64_t n, float a, float b) {                           \
    unary_grad_row_switch<T>(op, o, g, x, y, n, a, b);                                                            \
  }                                                                                                               \
  void binary_row_##suffix##_baseline(BinaryOp op, int scalar, T* o, const T* a, const T* b, int64_t n) {         \
    binary_row_switch<T>(op, scalar, o, a, b, n);                                                                 \
  }                                                                                                               \
  PETAL_CPU_AVX512 void binary_row_##suffix##_avx512(BinaryOp op, int scalar, T* o, const T* a, const T* b,       \
                                                     int64_t n) {                                                 \
    binary_row_switch<T>(op, scalar, o, a, b, n);                                                                 \
  }

PETAL_ISA_WRAPPERS(float, f32)
PETAL_ISA_WRAPPERS(bf16_t, bf16)
#undef PETAL_ISA_WRAPPERS

// The ISA variant of the row kernel for T (float or bf16_t).
void unary_row_isa(UnaryOp op, float* o, const float* x, int64_t n, float a, float b) {
  (avx512_enabled() ? unary_row_f32_avx512 : unary_row_f32_baseline)(op, o, x, n, a, b);
}
void unary_row_isa(UnaryOp op, bf16_t* o, const bf16_t* x, int64_t n, float a, float b) {
  (avx512_enabled() ? unary_row_bf16_avx512 : unary_row_bf16_baseline)(op, o, x, n, a, b);
}
void unary_grad_row_isa(UnaryOp op, float* o, const float* g, const float* x, const float* y, int64_t n, float a,
                        float b) {
  (avx512_enabled() ? unary_grad_row_f32_avx512 : unary_grad_row_f32_baseline)(op, o, g, x, y, n, a, b);
}
void unary_grad_row_isa(UnaryOp op, bf16_t* o, const bf16_t* g, const bf16_t* x, const bf16_t* y, int64_t n, float a,
                        float b) {
  (avx512_enabled() ? unary_grad_row_bf16_avx512 : unary_grad_row_bf16_baseline)(op, o, g, x, y, n, a, b);
}
void binary_row_isa(BinaryOp op, int scalar, float* o, const float* a, const float* b, int64_t n) {
  (avx512_enabled() ? binary_row_f32_avx512 : binary_row_f32_baseline)(op, scalar, o, a, b, n);
}
void binary_row_isa(BinaryOp op, int scalar, bf16_t* o, const bf16_t* a, const bf16_t* b, int64_t n) {
  (avx512_enabled() ? binary_row_bf16_avx512 : binary_row_bf16_baseline)(op, scalar, o, a, b, n);
}

template <typename T>
constexpr bool has_row_kernels = std::is_same_v<T, float> || std::is_same_v<T, bf16_t>;

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
        if constexpr (has_row_kernels<T> && unary_vectorizes(op)) {
          if (inc[0] == 1 && inc[1] == 1) {
            unary_row_isa(op, op_, xp, n, a, b);
            return;
          }
        }
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
      if constexpr (has_row_kernels<T> && unary_grad_vectorizes(op)) {
        if (inc[0] == 1 && inc[1] == 1 && inc[2] == 1 && inc[3] == 1) {
          unary_grad_row_isa(op, o + off[0], g + off[1], x + off[2], y + off[3], n, a, b);
          return;
        }
      }
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
        if constexpr (has_row_kernels<T> && binary_vectorizes(op)) {
          if (inc[0] == 1 && (inc[1] == 1 || inc[1] == 0) && (inc[2] == 1 || inc[2] == 0) && (inc[1] | inc[2]) == 1) {
            binary_row_isa(op, inc[1] == 0 ? 2 : (inc[2] == 0 ? 1 : 0), op_, ap, bp, n);
            return;
          }
        }
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
