// The CPU softmax kernel's vectorized exp, exposed for its accuracy test (tests/test_softmax.cpp).
#pragma once
#include <cstdint>

namespace petal::kernels::cpu {

/// y[i] = exp(x[i]) by softmax.cpp's polynomial exp in the ISA variant cpu_isa() selects
/// (no libm call). Accurate to a few ulps for -87.3 <= x <= 88 (results >= FLT_MIN); results
/// below FLT_MIN may flush to 0, x < -88 (and -inf) gives exactly 0, NaN stays NaN.
void softmax_exp(float* y, const float* x, int64_t n);

}  // namespace petal::kernels::cpu
