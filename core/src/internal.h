// Helpers shared by core/ sources: views for kernels, broadcasting, dim wrapping,
// device/dtype checks. Internal: not installed.
#pragma once
#include <string>
#include <vector>

#include <petal/autograd.h>
#include <petal/tensor.h>

#include "kernels/backend.h"

namespace petal::detail {

/// Kernel view of t (its own shape and strides).
kernels::View to_view(const Tensor& t);
/// Kernel view of t broadcast to shape (stride 0 on broadcast dims).
kernels::View to_view(const Tensor& t, const Shape& shape);

kernels::Backend& backend_of(const Tensor& t);

/// Broadcast result shape of a and b; throws naming op and both shapes.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
/// Wraps a possibly negative dim into [0, ndim); throws naming op.
int64_t wrap_dim(const char* op, int64_t dim, int64_t ndim);
void check_defined(const char* op, const Tensor& t);
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_floating(const char* op, const Tensor& t);

/// Contiguous row-major strides of shape.
Shape contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);

/// A new tensor sharing t's storage with the given geometry (no autograd).
Tensor make_view(const Tensor& t, const Shape& shape, const Shape& strides, int64_t offset);

/// Throws if t takes part in autograd while grad mode is on (in-place ops); called before
/// every in-place write, it also drops autocast's cached casts of t's storage.
void check_inplace(const char* op, const Tensor& t);

}  // namespace petal::detail
