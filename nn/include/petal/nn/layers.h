// Basic layers: Linear, LayerNorm, Dropout, DropPath, activations, Identity, and the
// patch-embedding convolution. Parameter names and shapes follow PyTorch (Linear weight
// [out, in], Conv2d weight [out, in, kH, kW]) so state_dicts map one to one.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include <petal/nn/module.h>

namespace petal::nn {

/// How a Linear layer initializes its parameters.
enum class LinearInit {
  Torch,  ///< PyTorch default: kaiming_uniform(a=sqrt(5)) weight, U(+-1/sqrt(in)) bias
  Timm,   ///< timm ViT: trunc_normal(std=.02) weight, zero bias
};

/// y = x W^T + b; weight [out, in], bias [out].
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, LinearInit init = LinearInit::Torch);
  Tensor forward(const Tensor& x) override;
  /// Re-draws the parameters with the given scheme (global generator).
  void reset_parameters(LinearInit init);
  int64_t in_features, out_features;
  Tensor weight, bias;  // bias undefined when bias=false
};

/// LayerNorm over the last dim; weight ones, bias zeros when elementwise_affine.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) override;
  int64_t dim;
  double eps;
  Tensor weight, bias;  // undefined without elementwise_affine
};

/// Inverted dropout (active in training mode only).
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;
  double p;
};

/// Stochastic depth on a residual branch: drops whole samples with probability p in
/// training mode, scaling kept samples by 1/(1-p) (timm DropPath).
class DropPath : public Module {
 public:
  explicit DropPath(double p = 0.0, bool scale_by_keep = true);
  Tensor forward(const Tensor& x) override;
  double p;
  bool scale_by_keep;
};

class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override;
};

class GELU : public Module {
 public:
  explicit GELU(bool tanh_approximation = false) : Module("GELU"), tanh_approximation(tanh_approximation) {}
  Tensor forward(const Tensor& x) override;
  bool tanh_approximation;
};

class Identity : public Module {
 public:
  Identity() : Module("Identity") {}
  Tensor forward(const Tensor& x) override { return x; }
};

/// "relu" or "gelu" (exact erf form) or "gelu_tanh"; throws on other names.
std::shared_ptr<Module> make_activation(const std::string& name);

/// Conv2d with kernel_size == stride == patch_size, no padding (the ViT patchifier);
/// weight [D, C, P, P], bias [D]; PyTorch's Conv2d default init (kaiming_uniform a=sqrt(5)).
/// forward returns tokens [B, N, D] (N = (H/P)(W/P), row-major), not the [B, D, h, w] map.
class PatchConv2d : public Module {
 public:
  PatchConv2d(int64_t in_chans, int64_t embed_dim, int64_t patch_size, bool bias = true);
  Tensor forward(const Tensor& x) override;
  int64_t in_chans, embed_dim, patch_size;
  Tensor weight, bias;
};

}  // namespace petal::nn
