// Transformer parts. MultiheadAttention runs the fused attention kernel
// (petal::scaled_dot_product_attention) on permuted views of the qkv projection, without
// copying them; only dropout on the attention probabilities (attn_drop > 0 while training)
// needs the probabilities themselves and takes the composed matmul/softmax/matmul path.
#include <petal/nn/transformer.h>

#include <petal/nn/functional.h>
#include <petal/ops.h>

#include <cmath>

namespace petal::nn {

namespace F = functional;

MultiheadAttention::MultiheadAttention(int64_t d, int64_t h, bool qkv_bias, double attn_dropout, double proj_dropout,
                                       LinearInit init)
    : Module("MultiheadAttention"), dim(d), heads(h), head_dim(h > 0 ? d / h : 0), attn_drop(attn_dropout) {
  PETAL_CHECK(d > 0 && h > 0 && d % h == 0, "MultiheadAttention: dim ", d, " must be a positive multiple of heads ",
              h);
  PETAL_CHECK(attn_dropout >= 0.0 && attn_dropout <= 1.0, "MultiheadAttention: attn_drop must be in [0, 1], got ",
              attn_dropout);
  qkv = register_module("qkv", std::make_shared<Linear>(d, 3 * d, qkv_bias, init));
  proj = register_module("proj", std::make_shared<Linear>(d, d, true, init));
  proj_drop = register_module("proj_drop", std::make_shared<Dropout>(proj_dropout));
}

Tensor MultiheadAttention::forward(const Tensor& x) {
  PETAL_CHECK(x.dim() == 3 && x.size(2) == dim, "MultiheadAttention(dim=", dim, "): input must be [B, S, ", dim,
              "], got ", shape_str(x.shape()));
  const int64_t B = x.size(0), S = x.size(1);
  // [B, S, 3D] -> [B, S, 3, H, d] -> [3, B, H, S, d]
  Tensor t = qkv->forward(x).reshape({B, S, 3, heads, head_dim}).permute({2, 0, 3, 1, 4});
  Tensor q = t.select(0, 0), k = t.select(0, 1), v = t.select(0, 2);
  const bool probs_dropout = attn_drop > 0.0 && is_training();
  const bool fused_fits = x.device().is_cpu() || head_dim <= 128;  // the CUDA kernel's head_dim limit
  Tensor o = !probs_dropout && fused_fits ? scaled_dot_product_attention(q, k, v)  // [B, H, S, d]
                                          : F::scaled_dot_product_attention(q, k, v, attn_drop, is_training());
  o = o.transpose(1, 2).reshape({B, S, dim});
  return proj_drop->forward(proj->forward(o));
}

FFN::FFN(int64_t d, int64_t hidden, const std::string& activation, double dropout, LinearInit init) : Module("FFN") {
  PETAL_CHECK(d > 0 && hidden > 0, "FFN: sizes must be positive, got dim=", d, " hidden=", hidden);
  fc1 = register_module("fc1", std::make_shared<Linear>(d, hidden, true, init));
  act = register_module("act", make_activation(activation));
  drop = register_module("drop", std::make_shared<Dropout>(dropout));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, d, true, init));
}

Tensor FFN::forward(const Tensor& x) {
  if (auto gelu = std::dynamic_pointer_cast<GELU>(act)) {
    const char* activation = gelu->tanh_approximation ? "gelu_tanh" : "gelu";
    // No dropout between the GELU and fc2 (p = 0 or eval): fc1 + GELU + fc2 as one fused op,
    // whose backward on cuda puts the GELU and fc1 bias gradients in fc2's dX GEMM epilogue.
    if (drop->p == 0.0 || !drop->is_training())
      return drop->forward(fused_mlp(x, fc1->weight, fc1->bias, fc2->weight, fc2->bias, activation));
    // fc1 + GELU as one fused op (the activation in the GEMM's epilogue where cuBLASLt can).
    const Tensor h = fused_linear(x, fc1->weight, fc1->bias, activation);
    return drop->forward(fc2->forward(drop->forward(h)));
  }
  return drop->forward(fc2->forward(drop->forward(act->forward(fc1->forward(x)))));
}

TransformerLayer::TransformerLayer(const TransformerLayerOptions& o) : Module("TransformerLayer"), options_(o) {
  int n_attn = 0, n_ffn = 0, n_norm = 0;
  for (const auto& op : o.operation_order) {
    if (op == "self_attn") ++n_attn;
    else if (op == "ffn") ++n_ffn;
    else if (op == "norm") ++n_norm;
    else PETAL_FAIL("TransformerLayer: unknown operation '", op, "' in operation_order (expected self_attn, norm, ffn)");
  }
  PETAL_CHECK(n_attn == 1 && n_ffn == 1, "TransformerLayer: operation_order needs exactly one self_attn and one ffn, got ",
              n_attn, " and ", n_ffn);
  pre_norm_ = o.operation_order.front() == "norm";
  // Registration order mirrors timm's Block (norm1, attn, norm2, mlp) for the usual orders.
  int norm_index = 0;
  for (const auto& op : o.operation_order) {
    if (op == "norm") {
      ++norm_index;
      norms.push_back(register_module("norm" + std::to_string(norm_index),
                                      std::make_shared<LayerNorm>(o.dim, o.norm_eps)));
    } else if (op == "self_attn") {
      attn = register_module("attn", std::make_shared<MultiheadAttention>(o.dim, o.heads, o.qkv_bias, o.attn_drop,
                                                                          o.drop, o.init));
    } else {
      auto hidden = static_cast<int64_t>(std::llround(static_cast<double>(o.dim) * o.mlp_ratio));
      mlp = register_module("mlp", std::make_shared<FFN>(o.dim, hidden, o.activation, o.drop, o.init));
    }
  }
  drop_path = register_module("drop_path", std::make_shared<DropPath>(o.drop_path));
}

Tensor TransformerLayer::forward(const Tensor& x) {
  Tensor query = x, identity = x;
  size_t norm_index = 0;
  for (const auto& op : options_.operation_order) {
    if (op == "norm") {
      query = norms[norm_index++]->forward(query);
      continue;
    }
    Tensor branch = op == "self_attn" ? attn->forward(query) : mlp->forward(query);
    query = add(pre_norm_ ? identity : query, drop_path->forward(branch));
    identity = query;
  }
  return query;
}

PatchEmbed::PatchEmbed(int64_t img, int64_t patch, int64_t chans, int64_t d, bool with_norm, double norm_eps)
    : Module("PatchEmbed"), img_size(img), patch_size(patch), in_chans(chans), embed_dim(d) {
  PETAL_CHECK(img > 0 && patch > 0 && img % patch == 0, "PatchEmbed: image size ", img,
              " must be a positive multiple of the patch size ", patch);
  proj = register_module("proj", std::make_shared<PatchConv2d>(chans, d, patch));
  if (with_norm) norm = register_module("norm", std::make_shared<LayerNorm>(d, norm_eps));
}

Tensor PatchEmbed::forward(const Tensor& x) {
  PETAL_CHECK(x.dim() == 4 && x.size(1) == in_chans, "PatchEmbed: input must be [B, ", in_chans, ", H, W], got ",
              shape_str(x.shape()));
  Tensor t = proj->forward(x);
  return norm ? norm->forward(t) : t;
}

}  // namespace petal::nn
