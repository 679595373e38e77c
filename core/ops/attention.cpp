// scaled_dot_product_attention: softmax(q k^T * scale) v on [B, H, S, Dh] operands, one
// fused kernel (kernels/*/attention.*) beside its backward rule. q/k/v go to the kernel
// as strided views (B, H, S strides; unit stride on Dh), so permuted slices of a fused
// qkv projection are read in place; only an operand whose last dim is not unit-stride is
// copied. The forward saves out and the per-row log-sum-exp; the backward recomputes the
// probabilities from them (kernels' attention_backward) and returns dq, dk, dv.
// Masks: a bool attn_mask becomes an additive 0 / -inf mask, a floating one is cast to the
// statistics dtype; either is expanded (zero strides) to [B, H, S_q, S_kv] and read in place
// by the kernels, which also apply is_causal themselves.
// Dropout: the op reserves Philox counters of the default generator (seed, offset) for the
// [B, H, S_q, S_kv] weights; the kernels draw the keep mask from them (kernels/philox.h) in
// the forward and again in the backward, so the mask is never stored.
#include <petal/autocast.h>
#include <petal/device.h>
#include <petal/random.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include <cmath>

#include "core/src/internal.h"
#include "kernels/philox.h"

namespace petal {

namespace {

constexpr const char* kOp = "scaled_dot_product_attention";

// t itself when its last dim is unit-stride, else a contiguous copy.
Tensor unit_stride_last(const Tensor& t) {
  return t.shape()[3] == 1 || t.strides()[3] == 1 ? t : t.contiguous();
}

kernels::AttentionArgs make_args(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const Tensor& mask,
                                 bool causal) {
  kernels::AttentionArgs a;
  a.causal = causal;
  if (mask.defined()) {
    a.mask = mask.data_ptr();
    for (int i = 0; i < 4; ++i) a.mask_strides[i] = mask.strides()[i];
  }
  a.dtype = q.dtype();
  a.batch = q.shape()[0];
  a.heads = q.shape()[1];
  a.seq_q = q.shape()[2];
  a.seq_kv = k.shape()[2];
  a.head_dim = q.shape()[3];
  a.scale = scale;
  a.q = q.data_ptr();
  a.k = k.data_ptr();
  a.v = v.data_ptr();
  for (int i = 0; i < 3; ++i) {
    a.q_strides[i] = q.strides()[i];
    a.k_strides[i] = k.strides()[i];
    a.v_strides[i] = v.strides()[i];
  }
  return a;
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  return scaled_dot_product_attention(q, k, v, Tensor(), false, scale, 0.0);
}

Tensor scaled_dot_product_attention(const Tensor& q_arg, const Tensor& k_arg, const Tensor& v_arg, const Tensor& attn_mask,
                                    bool is_causal, double scale, double dropout_p) {
  const std::vector<Tensor> cast = autocast_inputs(kOp, {q_arg, k_arg, v_arg});  // compute dtype (autocast.h)
  const Tensor &q_in = cast[0], &k_in = cast[1], &v_in = cast[2];
  detail::check_defined(kOp, q_in);
  detail::check_defined(kOp, k_in);
  detail::check_defined(kOp, v_in);
  detail::check_floating(kOp, q_in);
  PETAL_CHECK(q_in.dim() == 4 && k_in.dim() == 4 && v_in.dim() == 4, kOp,
              ": q, k, v must be [B, H, S, Dh], got q ", shape_str(q_in.shape()), ", k ", shape_str(k_in.shape()),
              ", v ", shape_str(v_in.shape()));
  PETAL_CHECK(k_in.dtype() == q_in.dtype() && v_in.dtype() == q_in.dtype(), kOp,
              ": q, k, v must share a dtype, got ", dtype_name(q_in.dtype()), ", ", dtype_name(k_in.dtype()), ", ",
              dtype_name(v_in.dtype()));
  detail::check_same_device(kOp, q_in, k_in);
  detail::check_same_device(kOp, q_in, v_in);
  const Shape& qs = q_in.shape();
  const Shape& ks = k_in.shape();
  PETAL_CHECK(ks[0] == qs[0] && ks[1] == qs[1] && ks[3] == qs[3] && v_in.shape() == ks, kOp,
              ": shapes do not match: q ", shape_str(qs), " (B, H, S_q, Dh), k ", shape_str(ks), " and v ",
              shape_str(v_in.shape()), " must be (B, H, S_kv, Dh)");
  PETAL_CHECK(ks[2] > 0 || qs[2] == 0, kOp, ": k and v have no positions (shape ", shape_str(ks), ")");
  PETAL_CHECK(q_in.device().is_cpu() || qs[3] <= 128, kOp, ": head_dim ", qs[3], " exceeds 128 on ",
              q_in.device().str());
  PETAL_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, kOp, ": dropout_p must be in [0, 1), got ", dropout_p);
  if (scale < 0) scale = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(qs[3], 1)));

  const Tensor q = unit_stride_last(q_in), k = unit_stride_last(k_in), v = unit_stride_last(v_in);
  const DType stat_dtype = q.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor mask;  // additive, statistics dtype, expanded to [B, H, S_q, S_kv]
  if (attn_mask.defined()) {
    detail::check_same_device(kOp, q_in, attn_mask);
    PETAL_CHECK(attn_mask.dtype() == DType::b8 || is_floating(attn_mask.dtype()), kOp,
                ": attn_mask must be bool or floating, got ", dtype_name(attn_mask.dtype()));
    const Shape full_shape{qs[0], qs[1], qs[2], ks[2]};
    const Shape& ms = attn_mask.shape();
    bool broadcasts = ms.size() <= 4;
    for (size_t i = 0; broadcasts && i < ms.size(); ++i) {
      const int64_t want = full_shape[4 - ms.size() + i];
      broadcasts = ms[i] == want || ms[i] == 1;
    }
    PETAL_CHECK(broadcasts, kOp, ": attn_mask of shape ", shape_str(ms), " does not broadcast to ", shape_str(full_shape),
                " (B, H, S_q, S_kv)");
    const TensorOptions mopts(stat_dtype, q.device());
    Tensor m = attn_mask.detach();
    m = m.dtype() == DType::b8 ? where(m, zeros(ms, mopts), full(ms, -INFINITY, mopts)) : m.to(stat_dtype);
    Shape m4(4 - ms.size(), 1);
    m4.insert(m4.end(), ms.begin(), ms.end());
    mask = m.reshape(m4).expand(full_shape);
  }
  Tensor out = empty({qs[0], qs[1], qs[2], qs[3]}, TensorOptions(q.dtype(), q.device()));
  Tensor lse = empty({qs[0], qs[1], qs[2]}, TensorOptions(stat_dtype, q.device()));
  kernels::AttentionArgs args = make_args(q, k, v, scale, mask, is_causal);
  if (dropout_p > 0.0) {
    Generator& gen = default_generator();
    args.dropout_p = dropout_p;
    args.dropout_seed = gen.seed;
    args.dropout_offset = gen.offset;
    gen.offset += kernels::attention_dropout_counters(qs[0] * qs[1], qs[2], ks[2]);
  }
  args.out = out.data_ptr();
  args.lse = lse.data_ptr();
  if (out.numel() > 0) detail::backend_of(q).attention_forward(args);

  // Saves detached operands and the output; the closure must not hold `out` with its graph.
  Tensor out_saved = out.detach();
  // The deterministic mode in effect at the forward decides its backward (as dropout's seed).
  const bool deterministic = are_deterministic_algorithms_enabled();
  const double drop_p = args.dropout_p;
  const uint64_t drop_seed = args.dropout_seed, drop_offset = args.dropout_offset;
  autograd::record(kOp, out, {q_in, k_in, v_in}, [q, k, v, out_saved, lse, scale, mask, is_causal, drop_p, drop_seed,
                                                  drop_offset, deterministic](const Tensor& g_in) {
    Tensor g = g_in.dtype() == q.dtype() ? g_in.contiguous() : g_in.to(q.dtype()).contiguous();
    const TensorOptions opts(q.dtype(), q.device());
    Tensor dq = empty(q.shape(), opts), dk = empty(k.shape(), opts), dv = empty(v.shape(), opts);
    if (q.shape()[2] == 0 || q.shape()[3] == 0) {
      dk = zeros(k.shape(), opts);
      dv = zeros(v.shape(), opts);
    } else if (dq.numel() > 0) {
      kernels::AttentionArgs a = make_args(q.detach(), k.detach(), v.detach(), scale, mask, is_causal);
      a.out = out_saved.data_ptr();
      a.lse = lse.data_ptr();
      a.dropout_p = drop_p;
      a.dropout_seed = drop_seed;
      a.dropout_offset = drop_offset;
      a.deterministic = deterministic;
      detail::backend_of(q).attention_backward(a, g.data_ptr(), dq.data_ptr(), dk.data_ptr(), dv.data_ptr());
    }
    return std::vector<Tensor>{dq, dk, dv};
  });
  return out;
}

}  // namespace petal
