// nn::functional built from core ops. Each function checks its shapes and names itself
// in errors; the math follows the PyTorch definitions documented in the header.
#include <petal/nn/functional.h>

#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include <cmath>

namespace petal::nn::functional {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  // One fused op (core/ops/linear.cpp): GEMM + bias (a cuBLASLt epilogue on cuda), bias
  // gradient without a separate reduction on cuda; autocast applies inside it ("linear").
  return fused_linear(x, weight, bias, "none");
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  PETAL_CHECK(x.defined() && x.dim() >= 1, "layer_norm: input must have at least one dim");
  int64_t D = x.size(-1);
  PETAL_CHECK(!weight.defined() || weight.shape() == Shape{D}, "layer_norm: weight ", shape_str(weight.shape()),
              " does not match normalized dim ", D, " of input ", shape_str(x.shape()));
  PETAL_CHECK(!bias.defined() || bias.shape() == Shape{D}, "layer_norm: bias ", shape_str(bias.shape()),
              " does not match normalized dim ", D, " of input ", shape_str(x.shape()));
  Tensor mu = mean(x, {-1}, true);
  Tensor centered = sub(x, mu);
  Tensor variance = mean(square(centered), {-1}, true);
  Tensor y = mul(centered, rsqrt(add(variance, eps)));
  if (weight.defined()) y = mul(y, weight);
  if (bias.defined()) y = add(y, bias);
  return y;
}

namespace {
// Bernoulli(keep) mask of the given shape in x's dtype/device, scaled by 1/keep if asked.
Tensor keep_mask(const Shape& shape, const Tensor& x, double keep, bool scale) {
  Tensor u = rand(shape, TensorOptions(x.dtype(), x.device()));
  Tensor m = lt(u, keep).to(x.dtype());
  return scale ? mul(m, 1.0 / keep) : m;
}
}  // namespace

Tensor dropout(const Tensor& x, double p, bool training) {
  PETAL_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability must be in [0, 1], got ", p);
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);
  return mul(x, keep_mask(x.shape(), x, 1.0 - p, true));
}

Tensor drop_path(const Tensor& x, double p, bool training, bool scale_by_keep) {
  PETAL_CHECK(p >= 0.0 && p <= 1.0, "drop_path: probability must be in [0, 1], got ", p);
  PETAL_CHECK(x.dim() >= 1, "drop_path: input must have a batch dim");
  if (!training || p == 0.0) return x;
  if (p == 1.0) return mul(x, 0.0);
  Shape s(static_cast<size_t>(x.dim()), 1);
  s[0] = x.size(0);
  return mul(x, keep_mask(s, x, 1.0 - p, scale_by_keep));
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double dropout_p, bool training,
                                    double scale) {
  PETAL_CHECK(q.dim() >= 2 && k.dim() == q.dim() && v.dim() == q.dim(),
              "scaled_dot_product_attention: q, k, v need the same rank >= 2, got ", shape_str(q.shape()), ", ",
              shape_str(k.shape()), ", ", shape_str(v.shape()));
  PETAL_CHECK(q.size(-1) == k.size(-1) && k.size(-2) == v.size(-2),
              "scaled_dot_product_attention: incompatible q ", shape_str(q.shape()), ", k ", shape_str(k.shape()),
              ", v ", shape_str(v.shape()));
  double s = scale > 0.0 ? scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  Tensor scores = matmul(mul(q, s), k.transpose(-2, -1));
  Tensor probs = softmax(scores, -1);
  probs = dropout(probs, dropout_p, training);
  return matmul(probs, v);
}

Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing) {
  PETAL_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N, C], got ", shape_str(logits.shape()));
  PETAL_CHECK(target.dim() == 1 && target.size(0) == logits.size(0), "cross_entropy: target must be [N] = [",
              logits.size(0), "], got ", shape_str(target.shape()));
  PETAL_CHECK(target.dtype() == DType::i64, "cross_entropy: target must be int64 class indices, got ",
              dtype_name(target.dtype()));
  PETAL_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
              "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  Tensor logp = log_softmax(logits, 1);
  Tensor idx = target.device() == logits.device() ? target : target.to(logits.device());
  Tensor nll = neg(gather(logp, 1, idx.unsqueeze(1)).squeeze(1));  // [N]
  Tensor loss = nll;
  if (label_smoothing > 0.0) {
    Tensor smooth = neg(mean(logp, {1}));  // -(1/C) sum_c log p_c
    loss = add(mul(nll, 1.0 - label_smoothing), mul(smooth, label_smoothing));
  }
  return mean(loss);
}

Tensor patch_conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t patch) {
  PETAL_CHECK(x.dim() == 4, "patch_conv2d: input must be [B, C, H, W], got ", shape_str(x.shape()));
  PETAL_CHECK(patch > 0, "patch_conv2d: patch size must be positive, got ", patch);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  PETAL_CHECK(weight.shape() == (Shape{weight.size(0), C, patch, patch}), "patch_conv2d: weight ",
              shape_str(weight.shape()), " does not match [D, ", C, ", ", patch, ", ", patch, "] for input ",
              shape_str(x.shape()));
  PETAL_CHECK(H % patch == 0 && W % patch == 0, "patch_conv2d: image size ", H, "x", W,
              " is not divisible by the patch size ", patch);
  const int64_t D = weight.size(0), h = H / patch, w = W / patch;
  PETAL_CHECK(!bias.defined() || bias.shape() == Shape{D}, "patch_conv2d: bias ", shape_str(bias.shape()),
              " does not match [", D, "]");
  // [B, C, h, P, w, P] -> [B, h, w, C, P, P] -> [B*h*w, C*P*P]
  Tensor patches = x.reshape({B, C, h, patch, w, patch}).permute({0, 2, 4, 1, 3, 5}).reshape({B * h * w, C * patch * patch});
  Tensor y = matmul(patches, weight.reshape({D, C * patch * patch}).t());
  if (bias.defined()) y = add(y, bias);
  return y.reshape({B, h * w, D});
}

}  // namespace petal::nn::functional
