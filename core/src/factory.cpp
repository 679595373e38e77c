// Tensor factories: empty/zeros/ones/full, arange/linspace (computed on the host in
// float64, then converted and moved), and tensors from host vectors.
#include <petal/tensor.h>

#include <cmath>

#include "internal.h"

namespace petal {

Tensor empty(const Shape& shape, TensorOptions opts) {
  for (auto s : shape) PETAL_CHECK(s >= 0, "empty: negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  int64_t n = detail::shape_numel(shape);
  const size_t nbytes = static_cast<size_t>(n) * dtype_size(opts.dtype());
  if (opts.pinned_memory()) {
    PETAL_CHECK(opts.device().is_cpu(), "empty: pinned_memory is for cpu tensors, got device ", opts.device().str(),
                " (shape ", shape_str(shape), ")");
    impl->storage = std::make_shared<Storage>(nbytes, Storage::Pinned{});
  } else {
    impl->storage = std::make_shared<Storage>(nbytes, opts.device());
  }
  impl->shape = shape;
  impl->strides = detail::contiguous_strides(shape);
  impl->dtype = opts.dtype();
  Tensor t(impl);
  if (opts.requires_grad()) t.requires_grad_(true);
  return t;
}

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  bool rg = opts.requires_grad();
  opts = opts.requires_grad(false);
  Tensor t = empty(shape, opts);
  t.fill_(value);
  if (rg) t.requires_grad_(true);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), TensorOptions(t.dtype(), t.device())); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), TensorOptions(t.dtype(), t.device())); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), TensorOptions(t.dtype(), t.device())); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, TensorOptions(t.dtype(), t.device())); }

static Tensor from_host_f64(const std::vector<double>& v, const Shape& shape, TensorOptions opts) {
  Tensor h = empty(shape, TensorOptions(DType::f64, kCPU));
  std::copy(v.begin(), v.end(), h.data<double>());
  Tensor out = h.to(opts.device(), opts.dtype());
  if (opts.requires_grad()) out.requires_grad_(true);
  return out;
}

Tensor arange(double start, double end, double step, TensorOptions opts) {
  PETAL_CHECK(step != 0, "arange: step must be nonzero");
  PETAL_CHECK((end - start) / step >= 0, "arange: upper bound and step sign are inconsistent (start ", start,
              ", end ", end, ", step ", step, ")");
  int64_t n = static_cast<int64_t>(std::ceil((end - start) / step));
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = start + static_cast<double>(i) * step;
  return from_host_f64(v, {n}, opts);
}
Tensor arange(int64_t end, TensorOptions opts) { return arange(0.0, static_cast<double>(end), 1.0, opts); }

Tensor linspace(double start, double end, int64_t steps, TensorOptions opts) {
  PETAL_CHECK(steps >= 0, "linspace: number of steps must be non-negative, got ", steps);
  std::vector<double> v(static_cast<size_t>(steps));
  double step = steps > 1 ? (end - start) / static_cast<double>(steps - 1) : 0.0;
  // Symmetric evaluation (as PyTorch does) so both ends are exact.
  int64_t half = steps / 2;
  for (int64_t i = 0; i < steps; ++i)
    v[i] = i < half ? start + step * static_cast<double>(i) : end - step * static_cast<double>(steps - 1 - i);
  return from_host_f64(v, {steps}, opts);
}

static Shape resolve_shape(const char* op, size_t n, const Shape& shape) {
  if (shape.empty()) return Shape{static_cast<int64_t>(n)};
  PETAL_CHECK(detail::shape_numel(shape) == static_cast<int64_t>(n), op, ": ", n,
              " values do not fill shape ", shape_str(shape));
  return shape;
}

Tensor tensor(const std::vector<float>& values, const Shape& shape, TensorOptions opts) {
  return from_host_f64(std::vector<double>(values.begin(), values.end()), resolve_shape("tensor", values.size(), shape), opts);
}
Tensor tensor(const std::vector<double>& values, const Shape& shape, TensorOptions opts) {
  return from_host_f64(values, resolve_shape("tensor", values.size(), shape), opts);
}
Tensor tensor(const std::vector<int64_t>& values, const Shape& shape, TensorOptions opts) {
  // Through int64 directly so large values are exact.
  Shape s = resolve_shape("tensor", values.size(), shape);
  Tensor h = empty(s, TensorOptions(DType::i64, kCPU));
  std::copy(values.begin(), values.end(), h.data<int64_t>());
  Tensor out = h.to(opts.device(), opts.dtype());
  if (opts.requires_grad()) out.requires_grad_(true);
  return out;
}
Tensor tensor(std::initializer_list<float> values, const Shape& shape, TensorOptions opts) {
  return tensor(std::vector<float>(values), shape, opts);
}
Tensor scalar_tensor(double value, TensorOptions opts) { return full({}, value, opts); }

}  // namespace petal
