// The differentiable op API (free functions, PyTorch-like names). Binary ops broadcast
// their operands and promote dtypes; every shape/dtype/device mismatch throws petal::Error
// naming the op and the shapes. Implementations live in core/ops/<family>.cpp, each op
// beside its backward rule.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <petal/tensor.h>

namespace petal {

// ---- elementwise binary (core/ops/binary.cpp)
Tensor add(const Tensor& a, const Tensor& b, double alpha = 1.0);  ///< a + alpha*b
Tensor sub(const Tensor& a, const Tensor& b, double alpha = 1.0);  ///< a - alpha*b
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);
Tensor rsub(const Tensor& a, double b);  ///< b - a
Tensor rdiv(const Tensor& a, double b);  ///< b / a
// comparisons (bool results, not differentiable)
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
/// cond ? a : b, broadcasting all three.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---- elementwise unary (core/ops/unary.cpp)
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
/// GELU; approximate="tanh" uses the tanh form, otherwise the exact erf form.
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
Tensor square(const Tensor& x);
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor clamp_min(const Tensor& x, double lo);
Tensor clamp_max(const Tensor& x, double hi);

// ---- reductions (core/ops/reduce.cpp); empty dims = all dims
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor max(const Tensor& x);
/// (values, indices) over dim, as torch.max(x, dim); converts to the values tensor.
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor min(const Tensor& x);
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  ///< int64 indices
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
/// Variance with Bessel's correction (correction=1) unless correction=0.
Tensor var(const Tensor& x, const std::vector<int64_t>& dims, int64_t correction = 1, bool keepdim = false);
/// Reduces a broadcast gradient back to shape (sums the broadcast dims).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- softmax (core/ops/softmax.cpp)
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// ---- linear algebra (core/ops/matmul.cpp)
/// torch.matmul semantics: 1-D/2-D/batched with broadcasting of batch dims.
Tensor matmul(const Tensor& a, const Tensor& b);

// ---- joining and indexing (core/ops/index.cpp)
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
/// out[index[i]] += src[i] along dim, out-of-place (differentiable in self and src).
Tensor scatter_add(const Tensor& self, int64_t dim, const Tensor& index, const Tensor& src);
Tensor one_hot(const Tensor& index, int64_t num_classes);  ///< int64 result

// ---- fused kernels of the mission (core/ops/<family>.cpp), hand-written on every backend
/// LayerNorm over the last dim; weight and bias ([D]) may be undefined tensors.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
/// Softmax cross-entropy of logits [N, C] and int64 targets [N], averaged over the rows
/// whose target != ignore_index, with label smoothing (torch.nn.functional.cross_entropy).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, double label_smoothing = 0.0,
                     int64_t ignore_index = -100);
/// softmax(q k^T * scale) v on [B, H, S, Dh] operands (unit stride on Dh, any other strides);
/// scale < 0 means 1/sqrt(Dh). Returns a contiguous [B, H, S_q, Dh] tensor.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale = -1.0);
/// The same with an optional attn_mask broadcastable to [B, H, S_q, S_kv] (bool: true takes
/// part; floating: added to the scaled scores; no gradient flows to it) and is_causal (key j
/// > query i excluded, PyTorch's top-left alignment). Rows with no key left give zeros.
/// dropout_p in [0, 1): attention dropout on the softmax weights (kept ones scaled by
/// 1 / (1 - p)), drawn from the default generator (seeded Philox, the same mask on every
/// backend; the backward regenerates it). Pass 0 outside training, as torch's functional form.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& attn_mask,
                                    bool is_causal = false, double scale = -1.0, double dropout_p = 0.0);
/// Fused Linear (core/ops/linear.cpp): act(x W^T + bias) for x [..., in], weight [out, in],
/// bias [out] (may be undefined), activation "none", "gelu" (erf) or "gelu_tanh"; on cuda
/// the bias, the tanh GELU and the bias gradient ride in cuBLASLt epilogues.
Tensor fused_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const std::string& activation = "none");
/// Fused MLP (core/ops/mlp.cpp): fc2(act(fc1(x))) = act(x W1^T + b1) W2^T + b2 for x [..., in],
/// w1 [hidden, in], b1 [hidden], w2 [out, hidden], b2 [out] (biases may be undefined),
/// activation "gelu" (erf), "gelu_tanh" or "none"; what two fused_linear calls compute (bit for bit on cpu).
/// On cuda the backward's fc2 dX GEMM carries cuBLASLt's DGELU_BGRAD (tanh GELU): fc1's
/// activation gradient and bias gradient in its epilogue.
Tensor fused_mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2,
                 const std::string& activation = "gelu");
/// Conv2d with kernel = stride = patch size: x [B, C, H, W], weight [D, C, P, P], bias [D]
/// (may be undefined) -> tokens [B, (H/P)*(W/P), D].
Tensor patch_embed(const Tensor& x, const Tensor& weight, const Tensor& bias);
/// Fused in-place optimizer steps on one parameter (torch.optim.AdamW / SGD rules; no
/// autograd). States are tensors shaped like param; max_exp_avg_sq is used with amsgrad.
void adamw_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, Tensor& max_exp_avg_sq,
                 double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step, bool amsgrad);
void sgd_step_(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, double lr, double momentum,
               double dampening, double weight_decay, bool nesterov, bool first_step);
/// Multi-tensor AdamW step: the rule above on every parameter of a list (one dtype and
/// device; each operand contiguous) in one or a few launches; steps[i] is parameter i's
/// step count; max_exp_avg_sqs may be empty without amsgrad.
void adamw_multi_tensor_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                              const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                              const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<int64_t>& steps, double lr,
                              double beta1, double beta2, double eps, double weight_decay, bool amsgrad);
/// Multi-tensor SGD step over a list (momentum_buffers may be empty when momentum == 0;
/// first_steps[i]: buffer i is initialised from its gradient).
void sgd_multi_tensor_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                            const std::vector<Tensor>& momentum_buffers, const std::vector<bool>& first_steps,
                            double lr, double momentum, double dampening, double weight_decay, bool nesterov);

// ---- operators
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return div(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(double a, const Tensor& b) { return rsub(b, a); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator/(double a, const Tensor& b) { return rdiv(b, a); }
inline Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
inline Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
inline Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
inline Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
inline Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
inline Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
inline Tensor operator==(const Tensor& a, double b) { return eq(a, b); }
inline Tensor operator!=(const Tensor& a, double b) { return ne(a, b); }
inline Tensor operator<(const Tensor& a, double b) { return lt(a, b); }
inline Tensor operator<=(const Tensor& a, double b) { return le(a, b); }
inline Tensor operator>(const Tensor& a, double b) { return gt(a, b); }
inline Tensor operator>=(const Tensor& a, double b) { return ge(a, b); }
inline Tensor operator==(double a, const Tensor& b) { return eq(b, a); }
inline Tensor operator!=(double a, const Tensor& b) { return ne(b, a); }
inline Tensor operator<(double a, const Tensor& b) { return gt(b, a); }
inline Tensor operator<=(double a, const Tensor& b) { return ge(b, a); }
inline Tensor operator>(double a, const Tensor& b) { return lt(b, a); }
inline Tensor operator>=(double a, const Tensor& b) { return le(b, a); }

/// True when both tensors have the same shape and all elements are within
/// atol + rtol*|b| (compares on the CPU in float64).
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8);

}  // namespace petal
