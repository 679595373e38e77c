// GELU (erf and tanh forms) and its derivative for the CPU kernels (kernels/cpu/linear.cpp's
// fused epilogues and kernels/cpu/elementwise.cpp's unary ops share these), and the float
// exp / erf / tanh they are built on.
//
// The float functions are branch-free and call no libm, so a row loop over them inlines into
// both ISA variants of kernels/cpu/isa.h and vectorizes (SSE2 xmm or AVX-512 zmm): every lane
// computes each piece of the approximation and a select picks one. Coefficients were fitted
// for this file (near-minimax relative error, Lawson-weighted least squares at high precision);
// tests/test_elementwise.cpp measures each function against std:: in double over every
// exponent and a dense grid, with NaN, infinities, zeros and subnormals. double keeps std::.
//
//   exp_f:  x = k ln2 + r (Cody-Waite, |r| <= ln2/2), e^r = 1 + r + r^2 Q(r), times 2^k applied
//           as two power-of-two factors so subnormal results round once; x clamped to
//           [-104, 88.8] (outside: 0 and inf), NaN propagates.
//   erf_f:  |x| < 1: x + x M(x^2); else 1 - erfc(|x|) with erfc(a) = e^{-a^2} w R(w), w = 2/(a+2),
//           a form that stays accurate for every a >= 1 (w -> 0 as a -> inf).
//   tanh_f: |x| < 0.625: x + x^3 S(x^2); else (1 - e)/(1 + e) with e = e^{-2|x|}; sign restored.
//
// The erf GELU is x Phi(x), Phi(x) = (1 + erf(x/sqrt2))/2 computed as erfc(-x/sqrt2)/2 on the
// negative side (no cancellation for large negative x), and its derivative Phi(x) + x phi(x)
// reuses the same e^{-x^2/2}. The tanh GELU is 0.5 x (1 + tanh u) = x s, s = sigmoid(2u),
// u = sqrt(2/pi) (x + 0.044715 x^3), with derivative s + 2 x s (1 - s) u'.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/isa.h"

namespace petal::kernels::cpu {

namespace gelu_constants {
constexpr double kSqrt1_2 = 0.70710678118654752440;
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;
constexpr double kGeluCoef = 0.044715;
}  // namespace gelu_constants

PETAL_CPU_INLINE uint32_t float_as_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
PETAL_CPU_INLINE float bits_as_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

/// c ? a : b as bit operations. Both a and b are computed either way; with a plain ?: the
/// compiler sinks each arm's arithmetic under a branch, and (floating-point ops may trap) the
/// baseline SSE2 loop then does not vectorize.
PETAL_CPU_INLINE float select_f(bool c, float a, float b) {
  const uint32_t m = 0u - static_cast<uint32_t>(c);
  return bits_as_float((float_as_bits(a) & m) | (float_as_bits(b) & ~m));
}

/// e^x in float, within about 1 ulp (subnormal results included); NaN in, NaN out.
PETAL_CPU_INLINE float exp_f(float x) {
  // A NaN fails both comparisons and passes the clamps unchanged.
  x = select_f(x > 88.8f, 88.8f, x);      // e^88.8 > FLT_MAX: inf below
  x = select_f(x < -104.0f, -104.0f, x);  // e^-104 < half the smallest subnormal: 0 below
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const float t = x * 1.44269504088896341f + kMagic;
  const float k = t - kMagic;
  const int32_t ki = static_cast<int32_t>(float_as_bits(t) - float_as_bits(kMagic));
  // ln2 = 0.693359375 (9 bits, so k * it is exact) - 2.12194440e-4.
  const float r = (x - k * 0.693359375f) - k * -2.12194440e-4f;
  float q = 1.390128862e-03f;
  q = q * r + 8.363157511e-03f;
  q = q * r + 4.166685417e-02f;
  q = q * r + 1.666657776e-01f;
  q = q * r + 5.000000000e-01f;
  const float p = 1.0f + (r + r * r * q);
  // 2^k = 2^k1 2^k2 with both factors normal for k in [-151, 128].
  const int32_t k1 = ki >> 1, k2 = ki - k1;
  const float s1 = bits_as_float(static_cast<uint32_t>(k1 + 127) << 23);
  const float s2 = bits_as_float(static_cast<uint32_t>(k2 + 127) << 23);
  return (p * s1) * s2;
}

/// erfc(a) for a >= 1 given e = e^{-a^2} (finite and >= 0 for every a >= 0, 0 at a = inf).
PETAL_CPU_INLINE float erfc_tail_f(float a, float e) {
  const float w = 2.0f / (a + 2.0f);
  float r = -7.691520452e-02f;
  r = r * w + 2.491030991e-01f;
  r = r * w + -2.456414104e-01f;
  r = r * w + 2.428499609e-02f;
  r = r * w + -2.495220117e-02f;
  r = r * w + 8.687985688e-02f;
  r = r * w + 1.760367155e-01f;
  r = r * w + 2.468449026e-01f;
  r = r * w + 2.820945978e-01f;
  r = r * w + 2.820948064e-01f;
  return e * (w * r);
}

/// erf(x) / x - 1 for |x| < 1, as a polynomial in t = x^2 (erf = x + x M keeps x exact).
PETAL_CPU_INLINE float erf_small_m_f(float t) {
  float p = 7.889119297e-05f;
  p = p * t + -8.020841051e-04f;
  p = p * t + 5.189535208e-03f;
  p = p * t + -2.685444430e-02f;
  p = p * t + 1.128360033e-01f;
  p = p * t + -3.761262596e-01f;
  p = p * t + 1.283791661e-01f;
  return p;
}

/// erf(x) in float, within a few ulp over the whole range; erf(+-inf) = +-1, NaN -> NaN.
PETAL_CPU_INLINE float erf_f(float x) {
  const float a = std::fabs(x);
  const float t = x * x;
  const float small = x + x * erf_small_m_f(t);
  const float big = std::copysign(1.0f - erfc_tail_f(a, exp_f(-t)), x);
  return select_f(a < 1.0f, small, big);
}

/// tanh(x) in float, within a few ulp over the whole range; tanh(+-inf) = +-1, NaN -> NaN.
PETAL_CPU_INLINE float tanh_f(float x) {
  const float a = std::fabs(x);
  const float t = x * x;
  float s = 2.292828634e-03f;
  s = s * t + -8.344028145e-03f;
  s = s * t + 2.176894620e-02f;
  s = s * t + -5.395926535e-02f;
  s = s * t + 1.333330423e-01f;
  s = s * t + -3.333333433e-01f;
  const float small = std::copysign(x + x * (t * s), x);  // the sign also for x = -0
  const float e = exp_f(-2.0f * a);
  const float big = std::copysign((1.0f - e) / (1.0f + e), x);
  return select_f(a < 0.625f, small, big);
}

/// 1 / (1 + e^-x).
PETAL_CPU_INLINE float sigmoid_f(float x) { return 1.0f / (1.0f + exp_f(-x)); }

enum class GeluForm { Erf, Tanh };

/// Phi(x) and phi(x) = e^{-x^2/2} / sqrt(2 pi) of the erf GELU (float).
PETAL_CPU_INLINE void gelu_erf_parts_f(float x, float& cdf, float& pdf) {
  using namespace gelu_constants;
  const float z = x * static_cast<float>(kSqrt1_2);
  const float a = std::fabs(z);
  const float t = z * z;
  const float e = exp_f(-t);
  const float small = 0.5f + 0.5f * (z + z * erf_small_m_f(t));
  const float half_erfc = 0.5f * erfc_tail_f(a, e);
  const float big = select_f(z > 0.0f, 1.0f - half_erfc, half_erfc);
  cdf = select_f(a < 1.0f, small, big);
  pdf = static_cast<float>(kInvSqrt2Pi) * e;
}

/// s = sigmoid(2u) and u' of the tanh GELU (float), so gelu = x s, gelu' = s + 2 x s (1 - s) u'.
PETAL_CPU_INLINE void gelu_tanh_parts_f(float x, float& s, float& one_minus_s, float& du) {
  using namespace gelu_constants;
  const float x2 = x * x;
  const float u = static_cast<float>(kSqrt2OverPi) * (x + static_cast<float>(kGeluCoef) * x2 * x);
  const float e = exp_f(-2.0f * u);
  s = 1.0f / (1.0f + e);
  // 1 - s = e s without cancellation; 1 where e overflowed (s = 0), not inf * 0.
  one_minus_s = select_f(e < 3.0e38f, e * s, 1.0f);
  du = static_cast<float>(kSqrt2OverPi) * (1.0f + static_cast<float>(3 * kGeluCoef) * x2);
}

/// gelu(x): float through the approximations above, double through std::.
template <GeluForm F, typename A>
PETAL_CPU_INLINE A gelu(A x) {
  using namespace gelu_constants;
  if constexpr (std::is_same_v<A, float>) {
    if constexpr (F == GeluForm::Erf) {
      float cdf, pdf;
      gelu_erf_parts_f(x, cdf, pdf);
      return x * cdf;
    } else {
      float s, oms, du;
      gelu_tanh_parts_f(x, s, oms, du);
      return x * s;
    }
  } else {
    if constexpr (F == GeluForm::Erf) return A(0.5) * x * (A(1) + std::erf(x * A(kSqrt1_2)));
    return A(0.5) * x * (A(1) + std::tanh(A(kSqrt2OverPi) * (x + A(kGeluCoef) * x * x * x)));
  }
}

/// d gelu(x) / dx.
template <GeluForm F, typename A>
PETAL_CPU_INLINE A gelu_grad(A x) {
  using namespace gelu_constants;
  if constexpr (std::is_same_v<A, float>) {
    if constexpr (F == GeluForm::Erf) {
      float cdf, pdf;
      gelu_erf_parts_f(x, cdf, pdf);
      return cdf + x * pdf;
    } else {
      float s, oms, du;
      gelu_tanh_parts_f(x, s, oms, du);
      return s + 2.0f * x * (s * oms) * du;
    }
  } else {
    if constexpr (F == GeluForm::Erf) {
      const A cdf = A(0.5) * (A(1) + std::erf(x * A(kSqrt1_2)));
      const A pdf = A(kInvSqrt2Pi) * std::exp(A(-0.5) * x * x);
      return cdf + x * pdf;
    }
    const A x2 = x * x;
    const A t = std::tanh(A(kSqrt2OverPi) * (x + A(kGeluCoef) * x2 * x));
    const A du = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCoef) * x2);
    return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * du;
  }
}

}  // namespace petal::kernels::cpu
