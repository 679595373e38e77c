// Parameter initializers (torch.nn.init / timm names). They fill a tensor in place on any
// device, without recording autograd, drawing from petal's global generator, so
// manual_seed(s) makes a model's initialization repeatable.
#pragma once
#include <cstdint>
#include <utility>

#include <petal/tensor.h>

namespace petal::nn::init {

/// Fills t with N(mean, std^2) truncated to [a, b] (absolute bounds, as timm's
/// trunc_normal_ and torch.nn.init.trunc_normal_). Inverse-CDF sampling in float64 on
/// the host from uniform draws of the global generator, then copied to t's device.
void trunc_normal_(Tensor& t, double mean = 0.0, double std = 1.0, double a = -2.0, double b = 2.0);
/// N(mean, std^2).
void normal_(Tensor& t, double mean = 0.0, double std = 1.0);
/// U(lo, hi).
void uniform_(Tensor& t, double lo = 0.0, double hi = 1.0);
void zeros_(Tensor& t);
void ones_(Tensor& t);
void constant_(Tensor& t, double value);

/// (fan_in, fan_out) as torch computes them: dim 1 and dim 0 times the receptive field
/// (the product of dims 2..); t needs at least 2 dims.
std::pair<int64_t, int64_t> fan_in_and_fan_out(const Tensor& t);
/// torch.nn.init.kaiming_uniform_(t, a, mode="fan_in", nonlinearity="leaky_relu"):
/// U(-bound, bound) with bound = sqrt(6 / ((1 + a^2) fan_in)). With a = sqrt(5) (the
/// PyTorch default for Linear/Conv weights) bound = 1/sqrt(fan_in).
void kaiming_uniform_(Tensor& t, double a = 0.0);
/// Lecun normal as timm/JAX use it: truncated normal with std sqrt(1/fan_in) / .87962566
/// (the std of a standard normal truncated to [-2, 2]), bounds +-2 std.
void lecun_normal_(Tensor& t);

/// Standard normal quantile function (inverse CDF) in double precision, for p in (0, 1).
double normal_quantile(double p);

}  // namespace petal::nn::init
