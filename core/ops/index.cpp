// Joining and indexing ops, beside their backward rules: cat and stack (copies into
// narrow views of the output; backward narrows the gradient), index_select (backward:
// index_add), gather (backward: scatter_add), scatter_add (backward: identity for self,
// gather for src) and one_hot. Index values are bounds-checked here, on a host copy of
// the index, so kernels can trust them; errors name the op, the bad index and the size.
#include <petal/autograd.h>
#include <petal/ops.h>

#include "core/src/internal.h"

namespace petal {

namespace {

// The index as a contiguous int64 tensor on `device` (converted if needed).
Tensor index_on(const Tensor& index, Device device) {
  NoGradGuard ng;
  return index.to(device, DType::i64).contiguous();
}

void check_index_dtype(const char* op, const Tensor& index) {
  PETAL_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, op,
              ": expected an int64 (or int32) index tensor, got ", dtype_name(index.dtype()), " of shape ",
              shape_str(index.shape()));
}

// Throws unless every value of index is in [0, size).
void check_index_range(const char* op, const Tensor& index, int64_t dim, int64_t size) {
  NoGradGuard ng;
  Tensor h = index.to(kCPU, DType::i64).contiguous();
  const int64_t* p = h.data<int64_t>();
  for (int64_t i = 0; i < h.numel(); ++i)
    PETAL_CHECK(p[i] >= 0 && p[i] < size, op, ": index ", p[i], " is out of bounds for dim ", dim, " with size ", size);
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim_in) {
  const char* op = "cat";
  PETAL_CHECK(!tensors.empty(), op, ": expected a non-empty list of tensors");
  for (const auto& t : tensors) detail::check_defined(op, t);
  // Like PyTorch, 1-D empty tensors are skipped when the others have other shapes.
  const Tensor* ref = nullptr;
  for (const auto& t : tensors)
    if (!(t.dim() == 1 && t.numel() == 0)) {
      ref = &t;
      break;
    }
  if (!ref) ref = &tensors[0];
  PETAL_CHECK(ref->dim() > 0, op, ": zero-dimensional tensor (shape ", shape_str(ref->shape()),
              ") cannot be concatenated");
  const int64_t dim = detail::wrap_dim(op, dim_in, ref->dim());
  DType dt = ref->dtype();
  Shape out_shape = ref->shape();
  out_shape[dim] = 0;
  std::vector<bool> skip(tensors.size(), false);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    detail::check_same_device(op, *ref, t);
    if (&t != ref && t.dim() == 1 && t.numel() == 0) {
      skip[i] = true;
      continue;
    }
    bool match = t.dim() == ref->dim();
    for (int64_t d = 0; match && d < t.dim(); ++d) match = d == dim || t.shape()[d] == ref->shape()[d];
    PETAL_CHECK(match, op, ": sizes of tensors must match except in dimension ", dim, ": tensor ", i, " has shape ",
                shape_str(t.shape()), " but expected ", shape_str(ref->shape()), " outside dimension ", dim);
    dt = promote_types(dt, t.dtype());
    out_shape[dim] += t.shape()[dim];
  }
  Tensor out = empty(out_shape, TensorOptions(dt, ref->device()));
  std::vector<int64_t> offsets(tensors.size(), 0), lengths(tensors.size(), 0);
  {
    NoGradGuard ng;
    int64_t off = 0;
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (skip[i]) continue;
      const int64_t len = tensors[i].shape()[dim];
      offsets[i] = off;
      lengths[i] = len;
      if (len > 0) out.narrow(dim, off, len).copy_(tensors[i]);
      off += len;
    }
  }
  std::vector<DType> dtypes;
  std::vector<Shape> shapes;
  for (const auto& t : tensors) {
    dtypes.push_back(t.dtype());
    shapes.push_back(t.shape());
  }
  autograd::record(op, out, tensors, [dim, offsets, lengths, skip, dtypes, shapes](const Tensor& g) {
    std::vector<Tensor> grads(offsets.size());
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!is_floating(dtypes[i])) continue;
      if (skip[i]) {
        grads[i] = zeros(shapes[i], TensorOptions(dtypes[i], g.device()));
        continue;
      }
      Tensor gi = g.narrow(dim, offsets[i], lengths[i]);
      grads[i] = gi.dtype() == dtypes[i] ? gi : gi.to(dtypes[i]);
    }
    return grads;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim_in) {
  const char* op = "stack";
  PETAL_CHECK(!tensors.empty(), op, ": expected a non-empty list of tensors");
  for (const auto& t : tensors) detail::check_defined(op, t);
  const int64_t dim = detail::wrap_dim(op, dim_in, tensors[0].dim() + 1);
  for (size_t i = 1; i < tensors.size(); ++i)
    PETAL_CHECK(tensors[i].shape() == tensors[0].shape(), op, ": expects each tensor to be equal size, but got ",
                shape_str(tensors[0].shape()), " at entry 0 and ", shape_str(tensors[i].shape()), " at entry ", i);
  std::vector<Tensor> parts;
  parts.reserve(tensors.size());
  for (const auto& t : tensors) parts.push_back(t.unsqueeze(dim));
  return cat(parts, dim);
}

Tensor index_select(const Tensor& x, int64_t dim_in, const Tensor& index) {
  const char* op = "index_select";
  detail::check_defined(op, x);
  detail::check_defined(op, index);
  detail::check_same_device(op, x, index);
  check_index_dtype(op, index);
  PETAL_CHECK(index.dim() <= 1, op, ": index must be 0-D or 1-D, got shape ", shape_str(index.shape()));
  const int64_t dim = detail::wrap_dim(op, dim_in, x.dim());
  // Work on x as at least 1-D.
  const Tensor xv = x.dim() == 0 ? detail::make_view(x, {1}, {1}, x.storage_offset()) : x;
  const int64_t size = xv.shape()[dim];
  check_index_range(op, index, dim, size);
  Tensor idx = index_on(index, x.device());
  Shape out_shape = xv.shape();
  out_shape[dim] = idx.numel();
  Tensor xc = xv.detach().contiguous();
  Tensor out = empty(out_shape, TensorOptions(x.dtype(), x.device()));
  if (out.numel() > 0)
    detail::backend_of(x).index_select(detail::to_view(out), detail::to_view(xc), static_cast<int>(dim),
                                       detail::to_view(idx));
  if (x.dim() == 0 && index.dim() == 0) out = detail::make_view(out, {}, {}, 0);
  Shape in_shape = xv.shape(), x_shape = x.shape();
  autograd::record(op, out, {x}, [idx, dim, in_shape, x_shape, out_shape](const Tensor& g) {
    // index_add handles repeated indices: their gradients add up.
    Tensor gi = zeros(in_shape, TensorOptions(g.dtype(), g.device()));
    Tensor gc = g.contiguous().reshape(out_shape);
    if (gc.numel() > 0)
      detail::backend_of(gi).index_add(detail::to_view(gi), static_cast<int>(dim), detail::to_view(idx),
                                       detail::to_view(gc));
    return std::vector<Tensor>{gi.reshape(x_shape)};
  });
  return out;
}

Tensor gather(const Tensor& x, int64_t dim_in, const Tensor& index) {
  const char* op = "gather";
  detail::check_defined(op, x);
  detail::check_defined(op, index);
  detail::check_same_device(op, x, index);
  check_index_dtype(op, index);
  const int64_t dim = detail::wrap_dim(op, dim_in, x.dim());
  PETAL_CHECK(index.dim() == x.dim(), op, ": index ", shape_str(index.shape()), " must have as many dims as input ",
              shape_str(x.shape()));
  for (int64_t d = 0; d < x.dim(); ++d)
    PETAL_CHECK(d == dim || index.shape()[d] <= x.shape()[d], op, ": index ", shape_str(index.shape()),
                " is larger than input ", shape_str(x.shape()), " in dim ", d);
  check_index_range(op, index, dim, x.dim() == 0 ? 1 : x.shape()[dim]);
  Tensor idx = index_on(index, x.device());
  Tensor xc = x.detach().contiguous();
  Tensor out = empty(index.shape(), TensorOptions(x.dtype(), x.device()));
  if (out.numel() > 0)
    detail::backend_of(x).gather(detail::to_view(out), detail::to_view(xc), static_cast<int>(dim),
                                 detail::to_view(idx));
  Shape x_shape = x.shape();
  autograd::record(op, out, {x}, [idx, dim, x_shape](const Tensor& g) {
    Tensor gi = zeros(x_shape, TensorOptions(g.dtype(), g.device()));
    Tensor gc = g.contiguous();
    if (gc.numel() > 0)
      detail::backend_of(gi).scatter_add(detail::to_view(gi), static_cast<int>(dim), detail::to_view(idx),
                                         detail::to_view(gc));
    return std::vector<Tensor>{gi};
  });
  return out;
}

Tensor scatter_add(const Tensor& self, int64_t dim_in, const Tensor& index, const Tensor& src) {
  const char* op = "scatter_add";
  detail::check_defined(op, self);
  detail::check_defined(op, index);
  detail::check_defined(op, src);
  detail::check_same_device(op, self, index);
  detail::check_same_device(op, self, src);
  check_index_dtype(op, index);
  PETAL_CHECK(self.dtype() == src.dtype(), op, ": self (", dtype_name(self.dtype()), ", shape ",
              shape_str(self.shape()), ") and src (", dtype_name(src.dtype()), ", shape ", shape_str(src.shape()),
              ") must have the same dtype");
  const int64_t dim = detail::wrap_dim(op, dim_in, self.dim());
  PETAL_CHECK(index.dim() == self.dim() && src.dim() == self.dim(), op, ": self ", shape_str(self.shape()), ", index ",
              shape_str(index.shape()), " and src ", shape_str(src.shape()), " must have the same number of dims");
  for (int64_t d = 0; d < self.dim(); ++d) {
    PETAL_CHECK(index.shape()[d] <= src.shape()[d], op, ": index ", shape_str(index.shape()), " is larger than src ",
                shape_str(src.shape()), " in dim ", d);
    PETAL_CHECK(d == dim || index.shape()[d] <= self.shape()[d], op, ": index ", shape_str(index.shape()),
                " is larger than self ", shape_str(self.shape()), " in dim ", d);
  }
  check_index_range(op, index, dim, self.dim() == 0 ? 1 : self.shape()[dim]);
  Tensor idx = index_on(index, self.device());
  // The kernel wants src shaped like index: use src's leading corner.
  Tensor src_part = src.detach();
  for (int64_t d = 0; d < src.dim(); ++d) src_part = src_part.narrow(d, 0, index.shape()[d]);
  Tensor out;
  {
    NoGradGuard ng;
    out = self.detach().clone();
    Tensor sc = src_part.contiguous();
    if (idx.numel() > 0)
      detail::backend_of(out).scatter_add(detail::to_view(out), static_cast<int>(dim), detail::to_view(idx),
                                          detail::to_view(sc));
  }
  Shape src_shape = src.shape(), index_shape = index.shape();
  autograd::record(op, out, {self, src}, [idx, dim, src_shape, index_shape](const Tensor& g) {
    // d out / d src[p] = g[p with p[dim] = index[p]]; src outside index's corner gets 0.
    Tensor gsrc = gather(g, dim, idx);
    if (gsrc.shape() != src_shape) {
      Tensor full_grad = zeros(src_shape, TensorOptions(g.dtype(), g.device()));
      Tensor corner = full_grad;
      for (size_t d = 0; d < index_shape.size(); ++d)
        corner = corner.narrow(static_cast<int64_t>(d), 0, index_shape[d]);
      corner.copy_(gsrc);
      gsrc = full_grad;
    }
    return std::vector<Tensor>{g, gsrc};
  });
  return out;
}

Tensor one_hot(const Tensor& index, int64_t num_classes) {
  const char* op = "one_hot";
  detail::check_defined(op, index);
  PETAL_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, op,
              ": expected an int64 (or int32) class index tensor, got ", dtype_name(index.dtype()), " of shape ",
              shape_str(index.shape()));
  Tensor h;
  {
    NoGradGuard ng;
    h = index.to(kCPU, DType::i64).contiguous();
  }
  const int64_t* p = h.data<int64_t>();
  if (num_classes < 0) {  // -1: infer as max + 1, as PyTorch does
    PETAL_CHECK(num_classes == -1, op, ": num_classes must be positive or -1, got ", num_classes);
    PETAL_CHECK(h.numel() > 0, op, ": cannot infer num_classes from an empty index tensor");
    num_classes = 0;
    for (int64_t i = 0; i < h.numel(); ++i) num_classes = std::max(num_classes, p[i] + 1);
  }
  for (int64_t i = 0; i < h.numel(); ++i)
    PETAL_CHECK(p[i] >= 0 && p[i] < num_classes, op, ": class value ", p[i], " (at position ", i,
                ") is out of range for num_classes ", num_classes, " (index shape ", shape_str(index.shape()), ")");
  Shape out_shape = index.shape();
  out_shape.push_back(num_classes);
  Tensor out = zeros(out_shape, TensorOptions(DType::i64, index.device()));
  if (h.numel() > 0 && num_classes > 0) {
    Shape col_shape = index.shape();
    col_shape.push_back(1);
    Tensor idx = index_on(index, index.device()).reshape(col_shape);
    Tensor ones_src = ones(col_shape, TensorOptions(DType::i64, index.device()));
    detail::backend_of(out).scatter_add(detail::to_view(out), static_cast<int>(out_shape.size() - 1),
                                        detail::to_view(idx), detail::to_view(ones_src));
  }
  return out;
}

}  // namespace petal
