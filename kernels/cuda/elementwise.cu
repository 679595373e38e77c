// Elementwise kernels: unary ops and their derivatives, binary ops (arithmetic and
// comparisons) and where, over strided views with broadcasting (stride 0), one thread
// per element in grid-stride loops. Math runs in the accumulator type (float for
// f32/bf16/f16, double for f64, the integer type itself for integers) with the CPU
// backend's formulas. Fully contiguous, vector-aligned unary and arithmetic binary
// ops take a vectorized path (16-byte loads/stores). The op is a kernel argument:
// the switch on it is uniform across the grid, so it costs a few instructions per
// element of a memory-bound kernel and keeps the number of instantiations small.
#include "kernels/cuda/cuda_backend.h"

namespace petal::kernels::PETAL_CUDA_NS {

namespace {

constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kGeluCoef = 0.044715;

template <typename A>
__device__ inline A unary_apply(UnaryOp op, A x, A alpha, A beta) {
  switch (op) {
    case UnaryOp::Neg: return A(-x);
    case UnaryOp::Abs:
      if constexpr (std::is_signed_v<A>) return x < A(0) ? A(-x) : x;
      return x;
    case UnaryOp::Relu: return x > A(0) ? x : A(0);
    case UnaryOp::Square: return A(x * x);
    case UnaryOp::Clamp: return x < alpha ? alpha : (x > beta ? beta : x);
    case UnaryOp::AddScalar: return A(x + alpha);
    case UnaryOp::MulScalar: return A(x * alpha);
    case UnaryOp::RSub: return A(alpha - x);
    default: break;
  }
  if constexpr (std::is_floating_point_v<A>) {
    switch (op) {
      case UnaryOp::Exp: return dmath::exp(x);
      case UnaryOp::Log: return dmath::log(x);
      case UnaryOp::Sqrt: return dmath::sqrt(x);
      case UnaryOp::Rsqrt: return A(1) / dmath::sqrt(x);
      case UnaryOp::Sin: return dmath::sin(x);
      case UnaryOp::Cos: return dmath::cos(x);
      case UnaryOp::Tanh: return dmath::tanh(x);
      case UnaryOp::Sigmoid: return A(1) / (A(1) + dmath::exp(-x));
      case UnaryOp::GeluErf: return A(0.5) * x * (A(1) + dmath::erf(x * A(kSqrt1_2)));
      case UnaryOp::GeluTanh:
        return A(0.5) * x * (A(1) + dmath::tanh(A(kSqrt2OverPi) * (x + A(kGeluCoef) * x * x * x)));
      case UnaryOp::PowScalar: return dmath::pow(x, alpha);
      case UnaryOp::RDiv: return alpha / x;
      default: break;
    }
  }
  return x;
}

// g * d op(x)/dx, given x and y = op(x) (floating types only).
template <typename A>
__device__ inline A unary_grad(UnaryOp op, A g, A x, A y, A alpha, A beta) {
  switch (op) {
    case UnaryOp::Neg: return -g;
    case UnaryOp::Abs: return x > A(0) ? g : (x < A(0) ? -g : A(0));
    case UnaryOp::Relu: return x > A(0) ? g : A(0);
    case UnaryOp::Square: return A(2) * x * g;
    case UnaryOp::Clamp: return (x >= alpha && x <= beta) ? g : A(0);
    case UnaryOp::AddScalar: return g;
    case UnaryOp::MulScalar: return g * alpha;
    case UnaryOp::RSub: return -g;
    case UnaryOp::Exp: return g * y;
    case UnaryOp::Log: return g / x;
    case UnaryOp::Sqrt: return g / (A(2) * y);
    case UnaryOp::Rsqrt: return A(-0.5) * g * y * y * y;
    case UnaryOp::Sin: return g * dmath::cos(x);
    case UnaryOp::Cos: return -g * dmath::sin(x);
    case UnaryOp::Tanh: return g * (A(1) - y * y);
    case UnaryOp::Sigmoid: return g * y * (A(1) - y);
    case UnaryOp::GeluErf: {
      const A cdf = A(0.5) * (A(1) + dmath::erf(x * A(kSqrt1_2)));
      const A pdf = A(kInvSqrt2Pi) * dmath::exp(A(-0.5) * x * x);
      return g * (cdf + x * pdf);
    }
    case UnaryOp::GeluTanh: {
      const A x2 = x * x;
      const A u = A(kSqrt2OverPi) * (x + A(kGeluCoef) * x2 * x);
      const A t = dmath::tanh(u);
      const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCoef) * x2);
      return g * (A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du);
    }
    case UnaryOp::PowScalar: return g * alpha * dmath::pow(x, alpha - A(1));
    case UnaryOp::RDiv: return -g * alpha / (x * x);
  }
  return g;
}

template <typename A>
__device__ inline A binary_apply(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::Add: return A(a + b);
    case BinaryOp::Sub: return A(a - b);
    case BinaryOp::Mul: return A(a * b);
    case BinaryOp::Div: return A(a / b);
    case BinaryOp::Pow:
      if constexpr (std::is_floating_point_v<A>) return dmath::pow(a, b);
      return a;  // core promotes integer pow to floating
    // NaN propagates through maximum/minimum as in PyTorch.
    case BinaryOp::Maximum: return (a != a) ? a : ((b != b) ? b : (a > b ? a : b));
    case BinaryOp::Minimum: return (a != a) ? a : ((b != b) ? b : (a < b ? a : b));
    default: return a;
  }
}

template <typename A>
__device__ inline bool compare_apply(BinaryOp op, A a, A b) {
  switch (op) {
    case BinaryOp::Eq: return a == b;
    case BinaryOp::Ne: return a != b;
    case BinaryOp::Lt: return a < b;
    case BinaryOp::Le: return a <= b;
    case BinaryOp::Gt: return a > b;
    case BinaryOp::Ge: return a >= b;
    default: return false;
  }
}

// Compute type of binary ops: bool arithmetic runs in int (as the CPU backend).
template <typename T>
using binary_acc_t = std::conditional_t<std::is_same_v<T, bool>, int, acc_t<T>>;

#define PETAL_GRID_STRIDE_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <typename T, typename A>
static __global__ void unary_strided_kernel(OffsetCalc<2> calc, int64_t n, T* out, const T* in, UnaryOp op, A alpha,
                                            A beta) {
  PETAL_GRID_STRIDE_LOOP(i, n) {
    int64_t off[2];
    calc.get(i, off);
    out[off[0]] = from_acc<T>(unary_apply<A>(op, static_cast<A>(to_acc(in[off[1]])), alpha, beta));
  }
}

template <typename T, typename A>
static __global__ void unary_contiguous_kernel(int64_t n, T* out, const T* in, UnaryOp op, A alpha, A beta) {
  constexpr int V = Vector<T>::kSize;
  const int64_t vectors = n / V;
  PETAL_GRID_STRIDE_LOOP(v, vectors) {
    const Vector<T> x = load_vector(in + v * V);
    Vector<T> y;
PETAL_UNROLL
    for (int j = 0; j < V; ++j) y.v[j] = from_acc<T>(unary_apply<A>(op, static_cast<A>(to_acc(x.v[j])), alpha, beta));
    store_vector(out + v * V, y);
  }
  for (int64_t i = vectors * V + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_acc<T>(unary_apply<A>(op, static_cast<A>(to_acc(in[i])), alpha, beta));
}

template <typename T, typename A>
static __global__ void unary_backward_kernel(OffsetCalc<4> calc, int64_t n, T* grad_in, const T* grad_out, const T* x,
                                             const T* y, UnaryOp op, A alpha, A beta) {
  PETAL_GRID_STRIDE_LOOP(i, n) {
    int64_t off[4];
    calc.get(i, off);
    grad_in[off[0]] =
        from_acc<T>(unary_grad<A>(op, to_acc(grad_out[off[1]]), to_acc(x[off[2]]), to_acc(y[off[3]]), alpha, beta));
  }
}

template <typename T, typename A, typename O>
static __global__ void binary_strided_kernel(OffsetCalc<3> calc, int64_t n, O* out, const T* a, const T* b,
                                             BinaryOp op) {
  PETAL_GRID_STRIDE_LOOP(i, n) {
    int64_t off[3];
    calc.get(i, off);
    const A x = static_cast<A>(to_acc(a[off[1]])), y = static_cast<A>(to_acc(b[off[2]]));
    if constexpr (std::is_same_v<O, bool>) {
      out[off[0]] = compare_apply<A>(op, x, y);
    } else {
      out[off[0]] = from_acc<O>(binary_apply<A>(op, x, y));
    }
  }
}

template <typename T, typename A>
static __global__ void binary_contiguous_kernel(int64_t n, T* out, const T* a, const T* b, BinaryOp op) {
  constexpr int V = Vector<T>::kSize;
  const int64_t vectors = n / V;
  PETAL_GRID_STRIDE_LOOP(v, vectors) {
    const Vector<T> x = load_vector(a + v * V);
    const Vector<T> y = load_vector(b + v * V);
    Vector<T> r;
PETAL_UNROLL
    for (int j = 0; j < V; ++j)
      r.v[j] = from_acc<T>(binary_apply<A>(op, static_cast<A>(to_acc(x.v[j])), static_cast<A>(to_acc(y.v[j]))));
    store_vector(out + v * V, r);
  }
  for (int64_t i = vectors * V + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = from_acc<T>(binary_apply<A>(op, static_cast<A>(to_acc(a[i])), static_cast<A>(to_acc(b[i]))));
}

// where moves bits only: U is the unsigned type as wide as the element.
template <typename U>
static __global__ void where_kernel(OffsetCalc<4> calc, int64_t n, U* out, const bool* cond, const U* a, const U* b) {
  PETAL_GRID_STRIDE_LOOP(i, n) {
    int64_t off[4];
    calc.get(i, off);
    out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]];
  }
}

template <typename T>
static void launch_unary(UnaryOp op, const View& out, const View& in, double alpha, double beta, Stream stream) {
  using A = acc_t<T>;
  const View* views[2] = {&out, &in};
  const OffsetCalc<2> calc = make_offset_calc(views);
  const int64_t n = out.numel();
  T* o = static_cast<T*>(out.data);
  const T* x = static_cast<const T*>(in.data);
  const A a = scalar_cast<A>(alpha), b = scalar_cast<A>(beta);
  if (calc.contiguous() && vector_aligned({o, x})) {
    PETAL_LAUNCH((unary_contiguous_kernel<T, A>), grid_for(n / Vector<T>::kSize + 1), kBlockSize, 0, stream, n, o, x,
                 op, a, b);
  } else {
    PETAL_LAUNCH((unary_strided_kernel<T, A>), grid_for(n), kBlockSize, 0, stream, calc, n, o, x, op, a, b);
  }
}

template <typename T>
static void launch_unary_backward(UnaryOp op, const View& gi, const View& go, const View& x, const View& y,
                                  double alpha, double beta, Stream stream) {
  using A = acc_t<T>;
  const View* views[4] = {&gi, &go, &x, &y};
  const int64_t n = gi.numel();
  PETAL_LAUNCH((unary_backward_kernel<T, A>), grid_for(n), kBlockSize, 0, stream, make_offset_calc(views), n,
               static_cast<T*>(gi.data), static_cast<const T*>(go.data), static_cast<const T*>(x.data),
               static_cast<const T*>(y.data), op, scalar_cast<A>(alpha), scalar_cast<A>(beta));
}

template <typename T>
static void launch_binary(BinaryOp op, const View& out, const View& av, const View& bv, Stream stream) {
  using A = binary_acc_t<T>;
  const View* views[3] = {&out, &av, &bv};
  const OffsetCalc<3> calc = make_offset_calc(views);
  const int64_t n = out.numel();
  const T* a = static_cast<const T*>(av.data);
  const T* b = static_cast<const T*>(bv.data);
  if (op >= BinaryOp::Eq) {
    PETAL_LAUNCH((binary_strided_kernel<T, A, bool>), grid_for(n), kBlockSize, 0, stream, calc, n,
                 static_cast<bool*>(out.data), a, b, op);
    return;
  }
  T* o = static_cast<T*>(out.data);
  if (calc.contiguous() && vector_aligned({o, a, b})) {
    PETAL_LAUNCH((binary_contiguous_kernel<T, A>), grid_for(n / Vector<T>::kSize + 1), kBlockSize, 0, stream, n, o, a,
                 b, op);
  } else {
    PETAL_LAUNCH((binary_strided_kernel<T, A, T>), grid_for(n), kBlockSize, 0, stream, calc, n, o, a, b, op);
  }
}

}  // namespace

void CudaBackend::unary(UnaryOp op, const View& out, const View& in, double alpha, double beta) {
  if (out.numel() == 0) return;
  Stream stream = activate();
  dispatch_all(out.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) launch_unary<T>(op, out, in, alpha, beta, stream);  // no bool arithmetic
  });
}

void CudaBackend::unary_backward(UnaryOp op, const View& grad_in, const View& grad_out, const View& x, const View& y,
                                 double alpha, double beta) {
  if (grad_in.numel() == 0) return;
  Stream stream = activate();
  dispatch_floating(grad_in.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_unary_backward<T>(op, grad_in, grad_out, x, y, alpha, beta, stream);
  });
}

void CudaBackend::binary(BinaryOp op, const View& out, const View& a, const View& b) {
  if (out.numel() == 0) return;
  Stream stream = activate();
  dispatch_all(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch_binary<T>(op, out, a, b, stream);
  });
}

void CudaBackend::where(const View& out, const View& cond, const View& a, const View& b) {
  const int64_t n = out.numel();
  if (n == 0) return;
  Stream stream = activate();
  const View* views[4] = {&out, &cond, &a, &b};
  const OffsetCalc<4> calc = make_offset_calc(views);
  dispatch_bits(out.dtype, [&](auto tag) {
    using U = typename decltype(tag)::type;
    PETAL_LAUNCH(where_kernel<U>, grid_for(n), kBlockSize, 0, stream, calc, n, static_cast<U*>(out.data),
                 static_cast<const bool*>(cond.data), static_cast<const U*>(a.data), static_cast<const U*>(b.data));
  });
}

}  // namespace petal::kernels::PETAL_CUDA_NS
