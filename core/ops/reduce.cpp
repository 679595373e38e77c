// Reductions: sum, mean, max, min (all elements or over dims), argmax/argmin, var and
// sum_to, each beside its backward rule. A reduction over a subset of dims permutes the
// view so kept dims come first and reduced dims last (no copy) and hands it to the
// backend's reduce kernel, which writes one contiguous element per kept position.
// Dtypes follow PyTorch: sums of integers/bools are int64, mean/var need floating inputs.
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include <algorithm>

#include "core/src/internal.h"

namespace petal {

using kernels::ReduceOp;

namespace {

// Wrapped, sorted, de-duplicated dims to reduce; empty `dims` means all dims. A 0-dim
// tensor accepts dim 0/-1 and reduces nothing.
std::vector<int64_t> reduce_dims(const char* op, const Tensor& x, const std::vector<int64_t>& dims) {
  std::vector<int64_t> r;
  if (dims.empty()) {
    for (int64_t d = 0; d < x.dim(); ++d) r.push_back(d);
    return r;
  }
  for (int64_t d : dims) {
    int64_t w = detail::wrap_dim(op, d, x.dim());
    PETAL_CHECK(std::find(r.begin(), r.end(), w) == r.end(), op, ": dim ", d,
                " appears more than once in the list of dims");
    if (w < x.dim()) r.push_back(w);
  }
  std::sort(r.begin(), r.end());
  return r;
}

bool contains(const std::vector<int64_t>& v, int64_t d) { return std::find(v.begin(), v.end(), d) != v.end(); }

// Output shape with reduced dims dropped (or kept as 1).
Shape reduced_shape(const Shape& in, const std::vector<int64_t>& dims, bool keepdim) {
  Shape s;
  for (int64_t d = 0; d < static_cast<int64_t>(in.size()); ++d) {
    if (!contains(dims, d))
      s.push_back(in[d]);
    else if (keepdim)
      s.push_back(1);
  }
  return s;
}

int64_t reduced_count(const Shape& in, const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= in[d];
  return n;
}

// Runs the reduce kernel over `dims` of x into a fresh tensor of dtype out_dtype; no autograd.
Tensor reduce_kernel(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, DType out_dtype) {
  Shape perm_shape, perm_strides;
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t d = 0; d < x.dim(); ++d)
      if (contains(dims, d) == (pass == 1)) {
        perm_shape.push_back(x.shape()[d]);
        perm_strides.push_back(x.strides()[d]);
      }
  Tensor permuted = detail::make_view(x, perm_shape, perm_strides, x.storage_offset());
  Tensor out = empty(reduced_shape(x.shape(), dims, keepdim), TensorOptions(out_dtype, x.device()));
  if (out.numel() > 0)
    detail::backend_of(x).reduce(op, detail::to_view(out), detail::to_view(permuted), static_cast<int>(dims.size()));
  return out;
}

// Gradient of a reduced output g (shape reduced_shape(in, dims, keepdim)) broadcast back to in.
Tensor expand_back(const Tensor& g, const Shape& in, const std::vector<int64_t>& dims) {
  return g.reshape(reduced_shape(in, dims, true)).expand(in);
}

DType sum_dtype(DType t) { return is_floating(t) ? t : DType::i64; }

void check_nonempty(const char* op, const Tensor& x, const std::vector<int64_t>& dims) {
  for (int64_t d : dims)
    PETAL_CHECK(x.shape()[d] != 0, op, ": cannot reduce over dim ", d, " of size 0 (shape ", shape_str(x.shape()), ")");
  PETAL_CHECK(x.numel() != 0 || !dims.empty(), op, ": cannot reduce an empty tensor of shape ", shape_str(x.shape()));
}

// max/min over all elements: the gradient is shared evenly among all tied extrema.
Tensor extremum_all(const char* op, ReduceOp rop, const Tensor& x) {
  detail::check_defined(op, x);
  PETAL_CHECK(x.numel() > 0, op, ": cannot reduce an empty tensor of shape ", shape_str(x.shape()));
  std::vector<int64_t> all = reduce_dims(op, x, {});
  Tensor out = reduce_kernel(rop, x, all, false, x.dtype());
  if (autograd::needs_grad({x})) {
    Tensor xd = x.detach(), od = out.detach();
    autograd::record(op, out, {x}, [xd, od](const Tensor& g) {
      Tensor mask = eq(xd, od).to(g.dtype());
      return std::vector<Tensor>{mul(mask, div(g, sum(mask)))};
    });
  }
  return out;
}

// max/min over one dim: (values, indices); the gradient goes to the selected (first) index.
ValuesIndices extremum_dim(const char* op, ReduceOp rop, ReduceOp arg_op, const Tensor& x, int64_t dim, bool keepdim) {
  detail::check_defined(op, x);
  std::vector<int64_t> dims = reduce_dims(op, x, {dim});
  check_nonempty(op, x, dims);
  Tensor out = reduce_kernel(rop, x, dims, keepdim, x.dtype());
  Tensor idx = reduce_kernel(arg_op, x, dims, true, DType::i64);
  if (autograd::needs_grad({x})) {
    Shape in = x.shape();
    int64_t d = dims.empty() ? 0 : dims[0];
    autograd::record(op, out, {x}, [idx, in, dims, d](const Tensor& g) {
      Tensor gk = g.reshape(reduced_shape(in, dims, true));
      if (dims.empty()) return std::vector<Tensor>{gk.reshape(in)};
      return std::vector<Tensor>{scatter_add(zeros(in, TensorOptions(g.dtype(), g.device())), d, idx, gk)};
    });
  }
  Tensor indices = keepdim ? idx : idx.reshape(reduced_shape(x.shape(), dims, false));
  return ValuesIndices(out, indices);
}

Tensor arg_extremum(const char* op, ReduceOp rop, const Tensor& x, int64_t dim, bool keepdim) {
  detail::check_defined(op, x);
  std::vector<int64_t> dims = reduce_dims(op, x, {dim});
  check_nonempty(op, x, dims);
  return reduce_kernel(rop, x, dims, keepdim, DType::i64);
}

}  // namespace

Tensor sum(const Tensor& x) { return sum(x, {}, false); }

Tensor sum(const Tensor& x_arg, const std::vector<int64_t>& dims_in, bool keepdim) {
  const std::vector<Tensor> cast = autocast_inputs("sum", {x_arg});  // compute dtype (autocast.h)
  const Tensor& x = cast[0];
  detail::check_defined("sum", x);
  std::vector<int64_t> dims = reduce_dims("sum", x, dims_in);
  Tensor out = reduce_kernel(ReduceOp::Sum, x, dims, keepdim, sum_dtype(x.dtype()));
  Shape in = x.shape();
  autograd::record("sum", out, {x},
                   [in, dims](const Tensor& g) { return std::vector<Tensor>{expand_back(g, in, dims)}; });
  return out;
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

Tensor mean(const Tensor& x_arg, const std::vector<int64_t>& dims_in, bool keepdim) {
  const std::vector<Tensor> cast = autocast_inputs("mean", {x_arg});  // compute dtype (autocast.h)
  const Tensor& x = cast[0];
  detail::check_defined("mean", x);
  detail::check_floating("mean", x);
  std::vector<int64_t> dims = reduce_dims("mean", x, dims_in);
  const int64_t count = reduced_count(x.shape(), dims);
  Tensor out;
  {
    NoGradGuard ng;
    out = reduce_kernel(ReduceOp::Sum, x, dims, keepdim, x.dtype());
    out = mul(out, 1.0 / static_cast<double>(count));  // 0/0 = NaN for an empty reduction, as in PyTorch
  }
  Shape in = x.shape();
  autograd::record("mean", out, {x}, [in, dims, count](const Tensor& g) {
    return std::vector<Tensor>{expand_back(mul(g, 1.0 / static_cast<double>(count)), in, dims)};
  });
  return out;
}

Tensor max(const Tensor& x) { return extremum_all("max", ReduceOp::Max, x); }
Tensor min(const Tensor& x) { return extremum_all("min", ReduceOp::Min, x); }
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum_dim("max", ReduceOp::Max, ReduceOp::ArgMax, x, dim, keepdim);
}
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim) {
  return extremum_dim("min", ReduceOp::Min, ReduceOp::ArgMin, x, dim, keepdim);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_extremum("argmax", ReduceOp::ArgMax, x, dim, keepdim);
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return arg_extremum("argmin", ReduceOp::ArgMin, x, dim, keepdim);
}

Tensor var(const Tensor& x_arg, const std::vector<int64_t>& dims_in, int64_t correction, bool keepdim) {
  const std::vector<Tensor> cast = autocast_inputs("var", {x_arg});  // compute dtype (autocast.h)
  const Tensor& x = cast[0];
  detail::check_defined("var", x);
  detail::check_floating("var", x);
  PETAL_CHECK(correction >= 0, "var: correction must be non-negative, got ", correction);
  std::vector<int64_t> dims = reduce_dims("var", x, dims_in);
  const int64_t count = reduced_count(x.shape(), dims);
  // Dividing by <= 0 gives inf/NaN, as PyTorch does for too few elements.
  const double denom = static_cast<double>(std::max<int64_t>(count - correction, 0));
  Tensor out, centered;
  {
    NoGradGuard ng;
    Tensor m = mean(x, dims, true);  // two-pass: subtract the mean first (no cancellation)
    centered = sub(x, m);
    out = div(reduce_kernel(ReduceOp::Sum, square(centered), dims, keepdim, x.dtype()), denom);
  }
  Shape in = x.shape();
  autograd::record("var", out, {x}, [centered, in, dims, denom](const Tensor& g) {
    // d var / dx = 2 (x - mean) / (N - correction); the mean's own dependence cancels.
    return std::vector<Tensor>{mul(expand_back(g, in, dims), mul(centered, 2.0 / denom))};
  });
  return out;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  detail::check_defined("sum_to", x);
  if (x.shape() == shape) return x;
  const int64_t nx = x.dim(), ns = static_cast<int64_t>(shape.size());
  bool ok = ns <= nx;
  std::vector<int64_t> dims;
  for (int64_t d = 0; ok && d < nx; ++d) {
    int64_t j = d - (nx - ns);
    if (j < 0) {
      dims.push_back(d);
    } else if (shape[j] == 1 && x.shape()[d] != 1) {
      dims.push_back(d);
    } else if (shape[j] != x.shape()[d]) {
      ok = false;
    }
  }
  PETAL_CHECK(ok, "sum_to: shape ", shape_str(x.shape()), " cannot be reduced to ", shape_str(shape), " (",
              shape_str(shape), " does not broadcast to it)");
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

}  // namespace petal
