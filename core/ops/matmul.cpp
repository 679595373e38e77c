// matmul with torch.matmul semantics, beside its backward rule. 1-D operands are promoted
// to matrices ([k] -> [1, k] on the left, [k, 1] on the right) and the added dim is
// dropped from the result; batch dims broadcast. Each operand's last two dims go to the
// backend GEMM as-is when they are row- or column-contiguous (a transposed view becomes a
// transpose flag, not a copy); other layouts are copied contiguous first. Batch dims are
// coalesced so that one GEMM call covers as many matrices as one batch stride can reach;
// a 2-D right operand folds all of the left operand's batch into the GEMM's m dimension.
// Backward: dA = dC B^T, dB = A^T dC, each summed over broadcast batch dims (sum_to).
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include <optional>

#include "core/src/internal.h"

namespace petal {

namespace {

// How BLAS sees a rows x cols matrix with strides (sr, sc): transposed or not, and its
// leading dimension. nullopt when neither layout fits (then the caller copies).
struct MatrixLayout {
  bool trans = false;
  int64_t ld = 1;
};
std::optional<MatrixLayout> matrix_layout(int64_t rows, int64_t cols, int64_t sr, int64_t sc) {
  if ((cols == 1 || sc == 1) && (rows == 1 || sr >= std::max<int64_t>(1, cols)))
    return MatrixLayout{false, rows == 1 ? std::max<int64_t>(1, cols) : sr};
  if ((rows == 1 || sr == 1) && (cols == 1 || sc >= std::max<int64_t>(1, rows)))
    return MatrixLayout{true, cols == 1 ? std::max<int64_t>(1, rows) : sc};
  return std::nullopt;
}

std::optional<MatrixLayout> layout_of(const Tensor& t) {
  const int64_t n = t.dim();
  return matrix_layout(t.shape()[n - 2], t.shape()[n - 1], t.strides()[n - 2], t.strides()[n - 1]);
}

// A view of t with new geometry (no autograd).
Tensor restrided(const Tensor& t, const Shape& shape, const Shape& strides) {
  return detail::make_view(t, shape, strides, t.storage_offset());
}

// t's batch dims (all but the last two) broadcast to batch: strides 0 where broadcast.
Shape batch_strides(const Tensor& t, const Shape& batch) {
  const int64_t nb = t.dim() - 2, lead = static_cast<int64_t>(batch.size()) - nb;
  Shape s(batch.size(), 0);
  for (int64_t i = 0; i < nb; ++i)
    if (t.shape()[i] == batch[lead + i]) s[lead + i] = t.strides()[i];
  return s;
}

// C[batch..., m, n] = A[batch..., m, k] @ B[batch..., k, n] for promoted (>= 2-D) operands
// of one dtype and device; c is a fresh contiguous tensor. No autograd.
Tensor matmul_kernel(const Tensor& a_in, const Tensor& b_in, const Shape& batch) {
  Tensor a = layout_of(a_in) ? a_in : a_in.contiguous();
  Tensor b = layout_of(b_in) ? b_in : b_in.contiguous();
  const int64_t m = a.shape()[a.dim() - 2], k = a.shape()[a.dim() - 1], n = b.shape()[b.dim() - 1];
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor c = empty(out_shape, TensorOptions(a.dtype(), a.device()));
  if (c.numel() == 0) return c;
  const MatrixLayout la = *layout_of(a), lb = *layout_of(b);
  const size_t es = a.element_size();
  const Shape sa = batch_strides(a, batch), sb = batch_strides(b, batch);

  kernels::GemmArgs g;
  g.dtype = a.dtype();
  g.m = m;
  g.n = n;
  g.k = k;
  g.trans_a = la.trans;
  g.lda = la.ld;
  g.trans_b = lb.trans;
  g.ldb = lb.ld;
  g.ldc = n;
  auto& backend = detail::backend_of(c);
  char* pa = static_cast<char*>(a.data_ptr());
  char* pb = static_cast<char*>(b.data_ptr());
  char* pc = static_cast<char*>(c.data_ptr());

  // B shared by every batch entry and A's [batch..., m] rows evenly spaced: one GEMM with
  // m = batch * m (the common activation @ weight case).
  bool b_shared = true;
  for (auto s : sb) b_shared = b_shared && s == 0;
  if (b_shared && !la.trans && !batch.empty()) {
    bool rows_even = true;
    int64_t row_stride = m > 1 ? a.strides()[a.dim() - 2] : -1;  // -1: not fixed yet
    int64_t span = m;                                            // rows covered so far
    for (int64_t i = static_cast<int64_t>(batch.size()) - 1; i >= 0 && rows_even; --i) {
      if (batch[i] == 1) continue;
      if (row_stride < 0) row_stride = sa[i];
      rows_even = sa[i] == row_stride * span && row_stride >= std::max<int64_t>(1, k);
      span *= batch[i];
    }
    if (rows_even) {
      int64_t batch_count = detail::shape_numel(batch);
      g.m = m * batch_count;
      g.lda = g.m == 1 ? std::max<int64_t>(1, k) : (row_stride < 0 ? la.ld : row_stride);
      g.a = pa;
      g.b = pb;
      g.c = pc;
      backend.gemm(g);
      return c;
    }
  }

  // General: coalesce batch dims across (a, b, c); the innermost one becomes the GEMM
  // batch, the rest are looped over here.
  const Shape sc = detail::contiguous_strides(out_shape);
  Shape dims, da, db, dc;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (batch[i] == 1) continue;
    if (!dims.empty() && da.back() == sa[i] * batch[i] && db.back() == sb[i] * batch[i] &&
        dc.back() == sc[i] * batch[i]) {
      dims.back() *= batch[i];
      da.back() = sa[i];
      db.back() = sb[i];
      dc.back() = sc[i];
      continue;
    }
    dims.push_back(batch[i]);
    da.push_back(sa[i]);
    db.push_back(sb[i]);
    dc.push_back(sc[i]);
  }
  if (dims.empty()) {
    dims = {1};
    da = db = dc = {0};
  }
  const size_t last = dims.size() - 1;
  g.batch = dims[last];
  g.stride_a = da[last];
  g.stride_b = db[last];
  g.stride_c = dc[last];
  int64_t outer = 1;
  for (size_t i = 0; i < last; ++i) outer *= dims[i];
  for (int64_t o = 0; o < outer; ++o) {
    int64_t rem = o, oa = 0, ob = 0, oc = 0;
    for (int64_t i = static_cast<int64_t>(last) - 1; i >= 0; --i) {
      int64_t idx = rem % dims[i];
      rem /= dims[i];
      oa += idx * da[i];
      ob += idx * db[i];
      oc += idx * dc[i];
    }
    g.a = pa + oa * static_cast<int64_t>(es);
    g.b = pb + ob * static_cast<int64_t>(es);
    g.c = pc + oc * static_cast<int64_t>(es);
    backend.gemm(g);
  }
  return c;
}

Tensor transpose_last(const Tensor& t) {
  Shape s = t.shape(), st = t.strides();
  std::swap(s[s.size() - 1], s[s.size() - 2]);
  std::swap(st[st.size() - 1], st[st.size() - 2]);
  return restrided(t, s, st);
}

}  // namespace

Tensor matmul(const Tensor& a_arg, const Tensor& b_arg) {
  const char* op = "matmul";
  const std::vector<Tensor> cast = autocast_inputs(op, {a_arg, b_arg});  // compute dtype (autocast.h)
  const Tensor &a = cast[0], &b = cast[1];
  detail::check_defined(op, a);
  detail::check_defined(op, b);
  const Shape& as = a.shape();
  const Shape& bs = b.shape();
  PETAL_CHECK(a.dim() >= 1 && b.dim() >= 1, op, ": both arguments need at least 1 dimension, got shapes ",
              shape_str(as), " and ", shape_str(bs));
  detail::check_same_device(op, a, b);
  PETAL_CHECK(a.dtype() == b.dtype(), op, ": expected both tensors to have the same dtype, got ", dtype_name(a.dtype()),
              " (shape ", shape_str(as), ") and ", dtype_name(b.dtype()), " (shape ", shape_str(bs), ")");
  PETAL_CHECK(is_floating(a.dtype()), op, ": expected floating point tensors, got ", dtype_name(a.dtype()), " (shapes ",
              shape_str(as), " and ", shape_str(bs), ")");
  // Promote 1-D operands to matrices.
  Tensor a2 = a.dim() == 1 ? restrided(a, {1, as[0]}, {0, a.strides()[0]}) : a.detach();
  Tensor b2 = b.dim() == 1 ? restrided(b, {bs[0], 1}, {b.strides()[0], 0}) : b.detach();
  const int64_t k = a2.shape()[a2.dim() - 1];
  PETAL_CHECK(k == b2.shape()[b2.dim() - 2], op, ": shapes ", shape_str(as), " and ", shape_str(bs),
              " cannot be multiplied (", k, " != ", b2.shape()[b2.dim() - 2], ")");
  // Broadcast the batch dims.
  Shape ba(a2.shape().begin(), a2.shape().end() - 2), bb(b2.shape().begin(), b2.shape().end() - 2);
  const size_t nb = std::max(ba.size(), bb.size());
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i) {
    int64_t x = i < nb - ba.size() ? 1 : ba[i - (nb - ba.size())];
    int64_t y = i < nb - bb.size() ? 1 : bb[i - (nb - bb.size())];
    PETAL_CHECK(x == y || x == 1 || y == 1, op, ": batch dims of shapes ", shape_str(as), " and ", shape_str(bs),
                " cannot be broadcast (", x, " vs ", y, ")");
    batch[i] = x == 1 ? y : x;
  }
  PETAL_CHECK(static_cast<int64_t>(nb) + 2 <= kernels::kMaxDims, op, ": too many dims (shapes ", shape_str(as), " and ",
              shape_str(bs), ")");
  Tensor c = matmul_kernel(a2, b2, batch);
  // Drop the dims added for 1-D operands.
  Shape out_shape = batch;
  if (a.dim() > 1) out_shape.push_back(as[as.size() - 2]);
  if (b.dim() > 1) out_shape.push_back(bs.back());
  Tensor out = restrided(c, out_shape, detail::contiguous_strides(out_shape));
  if (autograd::needs_grad({a, b})) {
    const Shape c_shape = c.shape(), a2_shape = a2.shape(), b2_shape = b2.shape();
    const bool need_a = a.requires_grad(), need_b = b.requires_grad();
    const Shape a_shape = as, b_shape = bs;
    autograd::record(op, out, {a, b}, [=](const Tensor& g) {
      Tensor gc = g.contiguous().reshape(c_shape);
      Tensor ga, gb;
      if (need_a) ga = sum_to(matmul_kernel(gc, transpose_last(b2), batch), a2_shape).reshape(a_shape);
      if (need_b) {
        bool b_shared = true;
        for (size_t i = 0; i + 2 < b2_shape.size(); ++i) b_shared = b_shared && b2_shape[i] == 1;
        if (b_shared && !batch.empty()) {
          // B shared by the whole batch (a Linear layer): one GEMM over all rows,
          // dB = A_rows^T dC_rows, instead of per-batch products summed afterwards.
          const int64_t k = a2_shape.back(), n = c_shape.back();
          Tensor a_rows = a2.reshape({-1, k}), g_rows = gc.reshape({-1, n});
          gb = matmul_kernel(transpose_last(a_rows), g_rows, {}).reshape(b_shape);
        } else {
          gb = sum_to(matmul_kernel(transpose_last(a2), gc, batch), b2_shape).reshape(b_shape);
        }
      }
      return std::vector<Tensor>{ga, gb};
    });
  }
  return out;
}

}  // namespace petal
