// softmax and log_softmax over any dim, beside their backward rules. The softmax dim is
// moved last (a view) and made contiguous, so the kernel always sees [rows, cols] rows;
// the result is the kernel's buffer viewed back in the input's dim order. Backward runs
// the softmax_backward kernel on the saved output in the same layout.
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include "core/src/internal.h"

namespace petal {

namespace {

// Permutation that moves dim to the end (its own inverse is computed by the caller).
std::vector<int64_t> dim_last_perm(int64_t ndim, int64_t dim) {
  std::vector<int64_t> p;
  for (int64_t d = 0; d < ndim; ++d)
    if (d != dim) p.push_back(d);
  p.push_back(dim);
  return p;
}

std::vector<int64_t> inverse_perm(const std::vector<int64_t>& p) {
  std::vector<int64_t> inv(p.size());
  for (size_t i = 0; i < p.size(); ++i) inv[p[i]] = static_cast<int64_t>(i);
  return inv;
}

// A view of t with its dims permuted (no autograd).
Tensor permuted(const Tensor& t, const std::vector<int64_t>& p) {
  Shape s, st;
  for (int64_t d : p) {
    s.push_back(t.shape()[d]);
    st.push_back(t.strides()[d]);
  }
  return detail::make_view(t, s, st, t.storage_offset());
}

Tensor softmax_impl(const char* op, const Tensor& x_arg, int64_t dim_in, bool log) {
  const std::vector<Tensor> cast = autocast_inputs(op, {x_arg});  // compute dtype (autocast.h)
  const Tensor& x = cast[0];
  detail::check_defined(op, x);
  detail::check_floating(op, x);
  const int64_t dim = detail::wrap_dim(op, dim_in, x.dim());
  const int64_t ndim = x.dim();
  const std::vector<int64_t> perm = ndim == 0 ? std::vector<int64_t>{} : dim_last_perm(ndim, dim);
  const std::vector<int64_t> inv = inverse_perm(perm);
  // Contiguous rows with the softmax dim last.
  Tensor xt = permuted(x, perm).contiguous();
  Tensor yt = empty(xt.shape(), TensorOptions(x.dtype(), x.device()));
  const int64_t cols = ndim == 0 ? 1 : x.shape()[dim];
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;
  if (rows > 0) detail::backend_of(x).softmax(yt.data_ptr(), xt.data_ptr(), x.dtype(), rows, cols, log);
  Tensor out = permuted(yt, inv);
  autograd::record(op, out, {x}, [yt, perm, inv, rows, cols, log](const Tensor& g) {
    Tensor gt = permuted(g, perm).contiguous();
    if (gt.dtype() != yt.dtype()) gt = gt.to(yt.dtype());
    Tensor gi = empty(yt.shape(), TensorOptions(yt.dtype(), yt.device()));
    if (rows > 0)
      detail::backend_of(yt).softmax_backward(gi.data_ptr(), gt.data_ptr(), yt.data_ptr(), yt.dtype(), rows, cols, log);
    return std::vector<Tensor>{permuted(gi, inv)};
  });
  return out;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl("softmax", x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl("log_softmax", x, dim, true); }

}  // namespace petal
