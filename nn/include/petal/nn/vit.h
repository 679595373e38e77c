// Vision Transformer. One class covers both layouts the project needs:
//  - timm's VisionTransformer (pre-norm, GELU, class token first, learned position
//    embedding, final norm): parameter names and shapes equal timm's, so a timm
//    state_dict loads by key (cls_token, pos_embed, patch_embed.proj.weight,
//    blocks.N.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2, norm, head);
//  - the seed's model (post-norm, ReLU, class token last, LayerNorm after the patch
//    projection).
// Initialization follows timm's default ('' mode): trunc_normal(std=.02, bounds +-2) for
// cls_token, pos_embed and every Linear weight (head included), zero Linear biases,
// LayerNorm ones/zeros; the patch projection keeps PyTorch's Conv2d default
// (kaiming_uniform a=sqrt(5), as timm leaves it). Draws come from the global generator,
// so manual_seed(s) before construction makes the model repeatable.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <petal/nn/layers.h>
#include <petal/nn/module.h>
#include <petal/nn/transformer.h>

namespace petal::nn {

struct ViTConfig {
  int64_t img_size = 224;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  int64_t width = 768;  ///< embed_dim
  int64_t depth = 12;
  int64_t heads = 12;
  double mlp_ratio = 4.0;
  int64_t num_classes = 1000;  ///< 0: no head, forward returns pooled features
  std::string activation = "gelu";  ///< "gelu", "gelu_tanh" or "relu"
  /// Block operation order (see TransformerLayerOptions); empty = pre-norm.
  std::vector<std::string> operation_order = {"norm", "self_attn", "norm", "ffn"};
  bool class_token_first = true;   ///< timm: [cls, patches]; the seed: [patches, cls]
  bool learned_pos_embed = true;   ///< false: fixed 2-D sin-cos table (a buffer, not trained)
  bool qkv_bias = true;
  bool patch_norm = false;         ///< LayerNorm after the patch projection
  bool final_norm = true;          ///< LayerNorm on the tokens before pooling
  std::string pool = "token";      ///< "token" (class token) or "avg" (mean of patch tokens)
  double norm_eps = 1e-6;
  double drop_rate = 0.0;          ///< dropout after pos-embed add, in attn proj/MLP, before head
  double attn_drop_rate = 0.0;
  double drop_path_rate = 0.0;     ///< block i gets rate * i / (depth - 1) (timm's linspace)

  /// The presets (img 224, patch 16; pre-norm, GELU, class token first, timm layout).
  static ViTConfig vit_tiny_patch16_224(int64_t num_classes = 1000);   ///< 192 wide, 12 deep, 3 heads
  static ViTConfig vit_small_patch16_224(int64_t num_classes = 1000);  ///< 384, 12, 6
  static ViTConfig vit_base_patch16_224(int64_t num_classes = 1000);   ///< 768, 12, 12
  /// The seed's model: ViT-B/16 dims, post-norm {"self_attn","norm","ffn","norm"}, ReLU,
  /// class token last, LayerNorm(eps 1e-5) after the patch projection, no extra final norm
  /// (every post-norm block already ends in one), 5 classes (flower_photos).
  static ViTConfig seed_vit_b16(int64_t num_classes = 5);
  /// One of the preset names above; throws petal::Error listing the known names.
  static ViTConfig preset(const std::string& name, int64_t num_classes);
  static std::vector<std::string> preset_names();
};

class ViT : public Module {
 public:
  explicit ViT(const ViTConfig& config);
  /// images [B, C, H, W] (H = W = img_size) -> logits [B, num_classes].
  Tensor forward(const Tensor& images) override;
  /// images -> all tokens after the blocks and the final norm, [B, 1 + N, D].
  Tensor forward_features(const Tensor& images);
  /// tokens [B, 1 + N, D] -> pooled (class token or patch mean) -> head.
  Tensor forward_head(const Tensor& tokens, bool pre_logits = false);

  const ViTConfig& config() const { return config_; }
  int64_t num_patches() const { return patch_embed->num_patches(); }
  /// Index of the class token in the sequence (0 or num_patches()).
  int64_t class_token_index() const { return config_.class_token_first ? 0 : num_patches(); }
  /// Freezes every parameter except head.* (training only the classifier).
  void freeze_all_but_head();
  /// Replaces the head with a fresh Linear(width, num_classes) (timm init), requires_grad on.
  void reset_classifier(int64_t num_classes);
  /// Parameter names timm excludes from weight decay besides 1-D tensors.
  std::vector<std::string> no_weight_decay() const { return {"cls_token", "pos_embed"}; }

  Tensor cls_token;  ///< [1, 1, D]
  Tensor pos_embed;  ///< [1, 1 + N, D] (class token's slot at class_token_index())
  std::shared_ptr<PatchEmbed> patch_embed;
  std::shared_ptr<Dropout> pos_drop;
  std::shared_ptr<Sequential> blocks;
  std::shared_ptr<LayerNorm> norm;  ///< null without final_norm
  std::shared_ptr<Dropout> head_drop;
  std::shared_ptr<Linear> head;     ///< null when num_classes == 0

 private:
  ViTConfig config_;
};

/// The fixed 2-D sin-cos position table (MAE style) for a grid x grid patch layout,
/// [grid*grid, dim] in float32 (dim % 4 == 0), patches row-major. The first half of dim
/// encodes the column (x) coordinate, the second half the row (y); each half holds
/// sin(pos * w_i) then cos(pos * w_i) with w_i = 10000^(-i / (dim/4)), i < dim/4.
Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid);

}  // namespace petal::nn
