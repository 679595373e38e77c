// Implementation of the internal helpers in internal.h.
#include <algorithm>

#include <petal/autocast.h>
#include <petal/autograd.h>

#include "internal.h"

namespace petal::detail {

kernels::View to_view(const Tensor& t) { return to_view(t, t.shape()); }

kernels::View to_view(const Tensor& t, const Shape& shape) {
  kernels::View v;
  PETAL_CHECK(static_cast<int>(shape.size()) <= kernels::kMaxDims, "tensors with more than ", kernels::kMaxDims,
              " dims are not supported, got shape ", shape_str(shape));
  v.data = t.data_ptr();
  v.dtype = t.dtype();
  v.ndim = static_cast<int>(shape.size());
  size_t lead = shape.size() - t.shape().size();
  for (size_t i = 0; i < shape.size(); ++i) {
    v.shape[i] = shape[i];
    if (i < lead) {
      v.strides[i] = 0;
    } else {
      int64_t s = t.shape()[i - lead];
      v.strides[i] = (s == shape[i]) ? t.strides()[i - lead] : 0;
    }
  }
  return v;
}

kernels::Backend& backend_of(const Tensor& t) { return kernels::backend_for(t.device()); }

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape r(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t x = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t y = i < n - b.size() ? 1 : b[i - (n - b.size())];
    PETAL_CHECK(x == y || x == 1 || y == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
                " cannot be broadcast (dim ", i, ": ", x, " vs ", y, ")");
    r[i] = (x == 1) ? y : x;
  }
  return r;
}

int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim) {
  int64_t n = std::max<int64_t>(ndim, 1);
  PETAL_CHECK(dim >= -n && dim < n, op, ": dimension ", dim, " out of range for a tensor with ", ndim, " dims");
  return dim < 0 ? dim + n : dim;
}

void check_defined(const char* op, const Tensor& t) {
  PETAL_CHECK(t.defined(), op, ": got an undefined tensor");
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  PETAL_CHECK(a.device() == b.device(), op, ": expected all tensors on the same device, got ", a.device().str(),
              " (shape ", shape_str(a.shape()), ") and ", b.device().str(), " (shape ", shape_str(b.shape()), ")");
}

void check_floating(const char* op, const Tensor& t) {
  PETAL_CHECK(is_floating(t.dtype()), op, ": expected a floating point tensor, got ", dtype_name(t.dtype()),
              " of shape ", shape_str(t.shape()));
}

Shape contiguous_strides(const Shape& shape) {
  Shape s(shape.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return s;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

Tensor make_view(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = t.impl()->storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = t.dtype();
  return Tensor(impl);
}

void check_inplace(const char* op, const Tensor& t) {
  PETAL_CHECK(!(grad_enabled() && t.requires_grad()), op,
              ": in-place operation on a tensor that requires grad (shape ", shape_str(t.shape()),
              "); use an out-of-place op or wrap it in NoGradGuard");
  autocast_forget_storage(t.impl()->storage.get());  // a cached low-precision copy is stale now
}

}  // namespace petal::detail
