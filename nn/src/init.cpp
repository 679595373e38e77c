// Parameter initializers. Truncated normal uses inverse-CDF sampling: a uniform draw u
// maps to Phi^-1(Phi(alpha) + u (Phi(beta) - Phi(alpha))), which is exact for any bounds
// (no rejection loop), computed in float64 on the host. The normal quantile is Acklam's
// rational approximation refined by one Halley step against erfc (full double accuracy).
#include <petal/nn/init.h>

#include <petal/autograd.h>
#include <petal/ops.h>

#include <algorithm>
#include <cmath>

namespace petal::nn::init {

namespace {
void check_fillable(const char* op, const Tensor& t) {
  PETAL_CHECK(t.defined(), "init::", op, ": undefined tensor");
  PETAL_CHECK(t.is_floating_point(), "init::", op, ": tensor must be floating point, got ", dtype_name(t.dtype()));
}
double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
}  // namespace

double normal_quantile(double p) {
  PETAL_CHECK(p > 0.0 && p < 1.0, "init::normal_quantile: p must be in (0, 1), got ", p);
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01,  -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double p_low = 0.02425;
  double x;
  if (p < p_low) {
    double q = std::sqrt(-2.0 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  } else if (p <= 1.0 - p_low) {
    double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  } else {
    double q = std::sqrt(-2.0 * std::log1p(-p));
    x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  }
  // One Halley step on Phi(x) - p.
  double e = normal_cdf(x) - p;
  double u = e * std::sqrt(2.0 * M_PI) * std::exp(0.5 * x * x);
  return x - u / (1.0 + 0.5 * x * u);
}

void trunc_normal_(Tensor& t, double mean, double std, double a, double b) {
  check_fillable("trunc_normal_", t);
  PETAL_CHECK(std > 0.0 && a < b, "init::trunc_normal_: need std > 0 and a < b, got std=", std, " a=", a, " b=", b);
  double lo = normal_cdf((a - mean) / std), hi = normal_cdf((b - mean) / std);
  PETAL_CHECK(hi > lo, "init::trunc_normal_: bounds [", a, ", ", b, "] hold no probability mass for mean ", mean,
              " std ", std);
  Tensor u = rand(t.shape(), TensorOptions(DType::f64));
  double* p = u.data<double>();
  const double tiny = 1e-300;
  for (int64_t i = 0; i < u.numel(); ++i) {
    double q = std::clamp(lo + p[i] * (hi - lo), tiny, std::nextafter(1.0, 0.0));
    p[i] = std::clamp(mean + std * normal_quantile(q), a, b);
  }
  NoGradGuard ng;
  t.copy_(u);
}

void normal_(Tensor& t, double mean, double std) {
  check_fillable("normal_", t);
  NoGradGuard ng;
  t.copy_(add(mul(randn(t.shape(), TensorOptions(t.dtype(), t.device())), std), mean));
}

void uniform_(Tensor& t, double lo, double hi) {
  check_fillable("uniform_", t);
  NoGradGuard ng;
  t.copy_(add(mul(rand(t.shape(), TensorOptions(t.dtype(), t.device())), hi - lo), lo));
}

void constant_(Tensor& t, double value) {
  check_fillable("constant_", t);
  NoGradGuard ng;
  t.fill_(value);
}
void zeros_(Tensor& t) { constant_(t, 0.0); }
void ones_(Tensor& t) { constant_(t, 1.0); }

std::pair<int64_t, int64_t> fan_in_and_fan_out(const Tensor& t) {
  PETAL_CHECK(t.dim() >= 2, "init: fan in/out need a tensor with at least 2 dims, got shape ", shape_str(t.shape()));
  int64_t receptive = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

void kaiming_uniform_(Tensor& t, double a) {
  int64_t fan_in = fan_in_and_fan_out(t).first;
  double gain = std::sqrt(2.0 / (1.0 + a * a));
  double bound = gain * std::sqrt(3.0 / static_cast<double>(fan_in));
  uniform_(t, -bound, bound);
}

void lecun_normal_(Tensor& t) {
  int64_t fan_in = fan_in_and_fan_out(t).first;
  double std = std::sqrt(1.0 / static_cast<double>(fan_in)) / 0.87962566103423978;
  trunc_normal_(t, 0.0, std, -2.0 * std, 2.0 * std);
}

}  // namespace petal::nn::init
