// Transformer parts in timm's layout: MultiheadAttention (fused qkv Linear [3D, D], then
// proj), FFN/Mlp (fc1, act, drop, fc2), TransformerLayer with a configurable operation
// order (pre-norm or post-norm, residuals and DropPath around attention and FFN), and
// PatchEmbed (patch convolution + optional LayerNorm).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <petal/nn/layers.h>
#include <petal/nn/module.h>

namespace petal::nn {

/// Self-attention over x [B, S, D]: qkv = x Wqkv^T + b -> heads -> softmax(q k^T / sqrt(d)) v (the fused
/// scaled_dot_product_attention kernel; the composed form only with attention dropout in training)
/// -> concat heads -> proj. Parameters: qkv.weight [3D, D], qkv.bias, proj.weight [D, D], proj.bias.
class MultiheadAttention : public Module {
 public:
  MultiheadAttention(int64_t dim, int64_t heads, bool qkv_bias = true, double attn_drop = 0.0, double proj_drop = 0.0,
                     LinearInit init = LinearInit::Timm);
  Tensor forward(const Tensor& x) override;
  int64_t dim, heads, head_dim;
  double attn_drop;
  std::shared_ptr<Linear> qkv, proj;
  std::shared_ptr<Dropout> proj_drop;
};

/// Two-layer MLP (timm Mlp): fc2(drop(act(fc1(x)))) followed by drop. With a GELU and no
/// dropout active between act and fc2 it runs as one fused_mlp (core/ops/mlp.cpp).
class FFN : public Module {
 public:
  FFN(int64_t dim, int64_t hidden_dim, const std::string& activation = "gelu", double drop = 0.0,
      LinearInit init = LinearInit::Timm);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<Module> act;
  std::shared_ptr<Dropout> drop;
};
using Mlp = FFN;

struct TransformerLayerOptions {
  int64_t dim = 768;
  int64_t heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  std::string activation = "gelu";
  double drop = 0.0;       ///< dropout after attention proj and inside/after the MLP
  double attn_drop = 0.0;  ///< dropout on attention probabilities
  double drop_path = 0.0;  ///< stochastic depth on both residual branches
  double norm_eps = 1e-6;
  /// Sequence of "self_attn", "norm", "ffn" (exactly one self_attn and one ffn). Pre-norm
  /// {"norm","self_attn","norm","ffn"} (timm) or post-norm {"self_attn","norm","ffn","norm"}.
  std::vector<std::string> operation_order = {"norm", "self_attn", "norm", "ffn"};
  LinearInit init = LinearInit::Timm;
};

/// One transformer block. Submodules: norm1, norm2, ... (in order of appearance), attn,
/// mlp (timm names). Residuals follow mmcv's BaseTransformerLayer: with pre-norm (order
/// starting with "norm") a sublayer adds its output to the value before the preceding
/// norm, otherwise to its own input; DropPath is applied to each sublayer's output.
class TransformerLayer : public Module {
 public:
  explicit TransformerLayer(const TransformerLayerOptions& options);
  Tensor forward(const Tensor& x) override;
  bool pre_norm() const { return pre_norm_; }
  const std::vector<std::string>& operation_order() const { return options_.operation_order; }
  std::shared_ptr<MultiheadAttention> attn;
  std::shared_ptr<FFN> mlp;
  std::vector<std::shared_ptr<LayerNorm>> norms;
  std::shared_ptr<DropPath> drop_path;

 private:
  TransformerLayerOptions options_;
  bool pre_norm_;
};

/// Image -> patch tokens [B, N, D]: proj (PatchConv2d, `proj.weight` [D, C, P, P]) and an
/// optional LayerNorm `norm` after it (the seed's PatchLayer).
class PatchEmbed : public Module {
 public:
  PatchEmbed(int64_t img_size, int64_t patch_size, int64_t in_chans, int64_t embed_dim, bool norm = false,
             double norm_eps = 1e-6);
  Tensor forward(const Tensor& x) override;
  int64_t img_size, patch_size, in_chans, embed_dim;
  int64_t grid_size() const { return img_size / patch_size; }
  int64_t num_patches() const { return grid_size() * grid_size(); }
  std::shared_ptr<PatchConv2d> proj;
  std::shared_ptr<LayerNorm> norm;  // null unless norm=true
};

}  // namespace petal::nn
