// Vision Transformer: patch embedding, class token (front or back), position embedding
// (learned or fixed sin-cos), a stack of TransformerLayers, final norm, pooling and head.
// Registration order reproduces timm's named_parameters() order.
#include <petal/nn/vit.h>

#include <petal/autograd.h>
#include <petal/nn/init.h>
#include <petal/ops.h>

#include <cmath>

namespace petal::nn {

// ---------------------------------------------------------------- presets

static ViTConfig timm_preset(int64_t width, int64_t heads, int64_t num_classes) {
  ViTConfig c;
  c.width = width;
  c.heads = heads;
  c.depth = 12;
  c.num_classes = num_classes;
  return c;
}

ViTConfig ViTConfig::vit_tiny_patch16_224(int64_t n) { return timm_preset(192, 3, n); }
ViTConfig ViTConfig::vit_small_patch16_224(int64_t n) { return timm_preset(384, 6, n); }
ViTConfig ViTConfig::vit_base_patch16_224(int64_t n) { return timm_preset(768, 12, n); }

ViTConfig ViTConfig::seed_vit_b16(int64_t n) {
  ViTConfig c = timm_preset(768, 12, n);
  c.activation = "relu";
  c.operation_order = {"self_attn", "norm", "ffn", "norm"};
  c.class_token_first = false;
  c.patch_norm = true;
  c.final_norm = false;
  c.norm_eps = 1e-5;
  return c;
}

std::vector<std::string> ViTConfig::preset_names() {
  return {"vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "seed_vit_b16"};
}

ViTConfig ViTConfig::preset(const std::string& name, int64_t num_classes) {
  if (name == "vit_tiny_patch16_224") return vit_tiny_patch16_224(num_classes);
  if (name == "vit_small_patch16_224") return vit_small_patch16_224(num_classes);
  if (name == "vit_base_patch16_224") return vit_base_patch16_224(num_classes);
  if (name == "seed_vit_b16") return seed_vit_b16(num_classes);
  std::string known;
  for (const auto& k : preset_names()) known += (known.empty() ? "" : ", ") + k;
  PETAL_FAIL("ViTConfig::preset: unknown preset '", name, "' (known: ", known, ")");
}

// ---------------------------------------------------------------- sin-cos table

Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid) {
  PETAL_CHECK(dim > 0 && dim % 4 == 0, "sincos_pos_embed_2d: dim must be a positive multiple of 4, got ", dim);
  PETAL_CHECK(grid > 0, "sincos_pos_embed_2d: grid must be positive, got ", grid);
  const int64_t quarter = dim / 4;
  std::vector<float> v(static_cast<size_t>(grid * grid * dim));
  for (int64_t r = 0; r < grid; ++r) {
    for (int64_t c = 0; c < grid; ++c) {
      float* row = v.data() + (r * grid + c) * dim;
      const double coords[2] = {static_cast<double>(c), static_cast<double>(r)};
      for (int half = 0; half < 2; ++half) {
        for (int64_t i = 0; i < quarter; ++i) {
          double omega = std::pow(10000.0, -static_cast<double>(i) / static_cast<double>(quarter));
          double a = coords[half] * omega;
          row[half * 2 * quarter + i] = static_cast<float>(std::sin(a));
          row[half * 2 * quarter + quarter + i] = static_cast<float>(std::cos(a));
        }
      }
    }
  }
  return tensor(v, {grid * grid, dim});
}

// ---------------------------------------------------------------- ViT

ViT::ViT(const ViTConfig& c) : Module("ViT"), config_(c) {
  PETAL_CHECK(c.width > 0 && c.depth > 0 && c.heads > 0 && c.width % c.heads == 0, "ViT: width ", c.width,
              " must be a positive multiple of heads ", c.heads, " and depth positive, got depth ", c.depth);
  PETAL_CHECK(c.img_size > 0 && c.patch_size > 0 && c.img_size % c.patch_size == 0, "ViT: img_size ", c.img_size,
              " must be a positive multiple of patch_size ", c.patch_size);
  PETAL_CHECK(c.num_classes >= 0, "ViT: num_classes must be >= 0, got ", c.num_classes);
  PETAL_CHECK(c.pool == "token" || c.pool == "avg", "ViT: pool must be 'token' or 'avg', got '", c.pool, "'");
  PETAL_CHECK(c.drop_path_rate >= 0.0 && c.drop_path_rate < 1.0, "ViT: drop_path_rate must be in [0, 1), got ",
              c.drop_path_rate);
  const int64_t D = c.width;
  const int64_t n_patches = (c.img_size / c.patch_size) * (c.img_size / c.patch_size);

  cls_token = register_parameter("cls_token", zeros({1, 1, D}));
  if (c.learned_pos_embed) {
    pos_embed = register_parameter("pos_embed", zeros({1, n_patches + 1, D}));
  } else {
    Tensor table = zeros({1, n_patches + 1, D});
    int64_t start = c.class_token_first ? 1 : 0;
    table.narrow(1, start, n_patches).copy_(sincos_pos_embed_2d(D, c.img_size / c.patch_size).unsqueeze(0));
    pos_embed = register_buffer("pos_embed", table);
  }
  patch_embed = register_module("patch_embed", std::make_shared<PatchEmbed>(c.img_size, c.patch_size, c.in_chans, D,
                                                                            c.patch_norm, c.norm_eps));
  pos_drop = register_module("pos_drop", std::make_shared<Dropout>(c.drop_rate));
  blocks = register_module("blocks", std::make_shared<Sequential>());
  for (int64_t i = 0; i < c.depth; ++i) {
    TransformerLayerOptions o;
    o.dim = D;
    o.heads = c.heads;
    o.mlp_ratio = c.mlp_ratio;
    o.qkv_bias = c.qkv_bias;
    o.activation = c.activation;
    o.drop = c.drop_rate;
    o.attn_drop = c.attn_drop_rate;
    o.drop_path = c.depth > 1 ? c.drop_path_rate * static_cast<double>(i) / static_cast<double>(c.depth - 1) : 0.0;
    o.norm_eps = c.norm_eps;
    if (!c.operation_order.empty()) o.operation_order = c.operation_order;
    o.init = LinearInit::Timm;
    blocks->push_back(std::make_shared<TransformerLayer>(o));
  }
  if (c.final_norm) norm = register_module("norm", std::make_shared<LayerNorm>(D, c.norm_eps));
  head_drop = register_module("head_drop", std::make_shared<Dropout>(c.drop_rate));
  if (c.num_classes > 0) {
    head = register_module("head", std::make_shared<Linear>(D, c.num_classes, true, LinearInit::Timm));
  } else {
    register_module("head", std::make_shared<Identity>());
  }
  // Tokens last, as timm's init_weights does (after the layers drew their weights).
  if (c.learned_pos_embed) init::trunc_normal_(pos_embed, 0.0, 0.02);
  init::trunc_normal_(cls_token, 0.0, 0.02);
}

Tensor ViT::forward_features(const Tensor& images) {
  const auto& c = config_;
  PETAL_CHECK(images.dim() == 4 && images.size(1) == c.in_chans && images.size(2) == c.img_size &&
                  images.size(3) == c.img_size,
              "ViT: images must be [B, ", c.in_chans, ", ", c.img_size, ", ", c.img_size, "], got ",
              shape_str(images.shape()));
  const int64_t B = images.size(0);
  Tensor x = patch_embed->forward(images);  // [B, N, D]
  Tensor cls = cls_token.expand({B, 1, c.width});
  x = c.class_token_first ? cat({cls, x}, 1) : cat({x, cls}, 1);
  x = add(x, pos_embed);
  x = pos_drop->forward(x);
  x = blocks->forward(x);
  if (norm) x = norm->forward(x);
  return x;
}

Tensor ViT::forward_head(const Tensor& tokens, bool pre_logits) {
  PETAL_CHECK(tokens.dim() == 3 && tokens.size(1) == num_patches() + 1 && tokens.size(2) == config_.width,
              "ViT::forward_head: tokens must be [B, ", num_patches() + 1, ", ", config_.width, "], got ",
              shape_str(tokens.shape()));
  Tensor pooled;
  if (config_.pool == "token") {
    pooled = tokens.select(1, class_token_index());
  } else {
    int64_t start = config_.class_token_first ? 1 : 0;
    pooled = mean(tokens.narrow(1, start, num_patches()), {1});
  }
  pooled = head_drop->forward(pooled);
  if (pre_logits || !head) return pooled;
  return head->forward(pooled);
}

Tensor ViT::forward(const Tensor& images) { return forward_head(forward_features(images)); }

void ViT::freeze_all_but_head() {
  for (auto& [name, p] : named_parameters()) p.requires_grad_(name.rfind("head.", 0) == 0);
}

void ViT::reset_classifier(int64_t num_classes) {
  PETAL_CHECK(num_classes >= 0, "ViT::reset_classifier: num_classes must be >= 0, got ", num_classes);
  config_.num_classes = num_classes;
  Device dev = cls_token.device();
  DType dt = cls_token.dtype();
  if (num_classes == 0) {
    head = nullptr;
    replace_module("head", std::make_shared<Identity>());
    return;
  }
  head = std::make_shared<Linear>(config_.width, num_classes, true, LinearInit::Timm);
  head->to(dev);
  head->to(dt);
  head->train(is_training());
  replace_module("head", head);
}

}  // namespace petal::nn
