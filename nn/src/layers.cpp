// Basic layers; each forward is a call into nn::functional.
#include <petal/nn/layers.h>

#include <petal/nn/functional.h>
#include <petal/nn/init.h>
#include <petal/ops.h>

#include <cmath>

namespace petal::nn {

namespace F = functional;

Linear::Linear(int64_t in, int64_t out, bool with_bias, LinearInit init)
    : Module("Linear"), in_features(in), out_features(out) {
  PETAL_CHECK(in > 0 && out > 0, "Linear: features must be positive, got in=", in, " out=", out);
  weight = register_parameter("weight", empty({out, in}));
  if (with_bias) bias = register_parameter("bias", empty({out}));
  reset_parameters(init);
}

void Linear::reset_parameters(LinearInit init) {
  if (init == LinearInit::Timm) {
    init::trunc_normal_(weight, 0.0, 0.02);
    if (bias.defined()) init::zeros_(bias);
  } else {
    init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (bias.defined()) {
      double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
      init::uniform_(bias, -bound, bound);
    }
  }
}

Tensor Linear::forward(const Tensor& x) { return F::linear(x, weight, bias); }

LayerNorm::LayerNorm(int64_t d, double e, bool affine) : Module("LayerNorm"), dim(d), eps(e) {
  PETAL_CHECK(d > 0, "LayerNorm: dim must be positive, got ", d);
  if (affine) {
    weight = register_parameter("weight", ones({d}));
    bias = register_parameter("bias", zeros({d}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  PETAL_CHECK(x.dim() >= 1 && x.size(-1) == dim, "LayerNorm(", dim, "): input ", shape_str(x.shape()),
              " has last dim ", x.dim() ? x.size(-1) : 0);
  return petal::layer_norm(x, weight, bias, eps);  // fused kernel (core/ops/layernorm.cpp)
}

Dropout::Dropout(double prob) : Module("Dropout"), p(prob) {
  PETAL_CHECK(p >= 0.0 && p <= 1.0, "Dropout: probability must be in [0, 1], got ", p);
}
Tensor Dropout::forward(const Tensor& x) { return F::dropout(x, p, is_training()); }

DropPath::DropPath(double prob, bool scale) : Module("DropPath"), p(prob), scale_by_keep(scale) {
  PETAL_CHECK(p >= 0.0 && p <= 1.0, "DropPath: probability must be in [0, 1], got ", p);
}
Tensor DropPath::forward(const Tensor& x) { return F::drop_path(x, p, is_training(), scale_by_keep); }

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x, tanh_approximation); }

std::shared_ptr<Module> make_activation(const std::string& name) {
  if (name == "relu") return std::make_shared<ReLU>();
  if (name == "gelu") return std::make_shared<GELU>(false);
  if (name == "gelu_tanh") return std::make_shared<GELU>(true);
  PETAL_FAIL("make_activation: unknown activation '", name, "' (expected relu, gelu or gelu_tanh)");
}

PatchConv2d::PatchConv2d(int64_t c, int64_t d, int64_t p, bool with_bias)
    : Module("PatchConv2d"), in_chans(c), embed_dim(d), patch_size(p) {
  PETAL_CHECK(c > 0 && d > 0 && p > 0, "PatchConv2d: sizes must be positive, got in_chans=", c, " embed_dim=", d,
              " patch_size=", p);
  weight = register_parameter("weight", empty({d, c, p, p}));
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (with_bias) {
    bias = register_parameter("bias", empty({d}));
    double bound = 1.0 / std::sqrt(static_cast<double>(c * p * p));
    init::uniform_(bias, -bound, bound);
  }
}

Tensor PatchConv2d::forward(const Tensor& x) {
  // Fused unfold + GEMM (core/ops/patch_embed.cpp); the patch size is the weight's.
  return petal::patch_embed(x, weight, bias);
}

}  // namespace petal::nn
