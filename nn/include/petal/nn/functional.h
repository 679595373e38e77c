// Stateless building blocks (torch.nn.functional names) composed from core ops, so
// autograd comes for free. The modules call the fused kernels instead (layer_norm,
// cross_entropy, patch_embed, scaled_dot_product_attention in <petal/ops.h>); these
// composed forms remain as readable references and are cross-checked against them.
#pragma once
#include <cstdint>

#include <petal/tensor.h>

namespace petal::nn::functional {

/// x @ weight^T + bias; x [..., in], weight [out, in], bias [out] or undefined.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

/// LayerNorm over the last dim: (x - mean) / sqrt(var + eps) * weight + bias (biased
/// variance, as torch); weight/bias [D] or undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);

/// Inverted dropout: in training, zeroes each element with probability p and scales the
/// rest by 1/(1-p); identity when !training or p == 0.
Tensor dropout(const Tensor& x, double p, bool training);

/// Stochastic depth: in training, zeroes whole samples (dim 0) with probability p and
/// scales kept ones by 1/(1-p) when scale_by_keep (timm's drop_path).
Tensor drop_path(const Tensor& x, double p, bool training, bool scale_by_keep = true);

/// softmax(q k^T * scale) v over the last two dims; q [..., Sq, d], k/v [..., Sk, d];
/// scale <= 0 means 1/sqrt(d). Dropout on the attention probabilities when training.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double dropout_p = 0.0,
                                    bool training = false, double scale = -1.0);

/// Mean cross entropy of logits [N, C] against int64 class indices [N], with label
/// smoothing eps: target distribution (1 - eps) one_hot + eps / C (torch semantics).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0);

/// Conv2d with kernel_size == stride == patch and no padding, returning tokens:
/// x [B, C, H, W], weight [D, C, P, P], bias [D] or undefined -> [B, (H/P)(W/P), D], patches
/// in row-major order (what conv2d(...).flatten(2).transpose(1, 2) gives). Done as a
/// patch unfold (reshape/permute) and one GEMM with the [D, C*P*P] weight.
Tensor patch_conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t patch);

}  // namespace petal::nn::functional
