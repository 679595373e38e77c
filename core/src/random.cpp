// The global counter-based generator and the random factories built on it.
#include <petal/random.h>
#include <petal/tensor.h>

#include "internal.h"

namespace petal {

Generator& default_generator() {
  static Generator g;
  return g;
}

void manual_seed(uint64_t seed) {
  default_generator().seed = seed;
  default_generator().offset = 0;
}

static Tensor random_tensor(const Shape& shape, TensorOptions opts, kernels::RandomKind kind, double a, double b) {
  Tensor t = empty(shape, opts);
  if (t.numel() > 0) {
    auto& g = default_generator();
    uint64_t offset = g.advance(static_cast<uint64_t>(t.numel()));
    detail::backend_of(t).random(detail::to_view(t), kind, g.seed, offset, a, b);
  }
  if (opts.requires_grad()) t.requires_grad_(true);
  return t;
}

Tensor randn(const Shape& shape, TensorOptions opts) {
  PETAL_CHECK(is_floating(opts.dtype()), "randn: dtype must be floating point, got ", dtype_name(opts.dtype()));
  return random_tensor(shape, opts, kernels::RandomKind::Normal, 0.0, 1.0);
}
Tensor rand(const Shape& shape, TensorOptions opts) {
  PETAL_CHECK(is_floating(opts.dtype()), "rand: dtype must be floating point, got ", dtype_name(opts.dtype()));
  return random_tensor(shape, opts, kernels::RandomKind::Uniform, 0.0, 1.0);
}
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions opts) {
  PETAL_CHECK(high > low, "randint: empty range [", low, ", ", high, ")");
  return random_tensor(shape, opts, kernels::RandomKind::Int, static_cast<double>(low), static_cast<double>(high));
}
Tensor randn_like(const Tensor& t) { return randn(t.shape(), TensorOptions(t.dtype(), t.device())); }
Tensor rand_like(const Tensor& t) { return rand(t.shape(), TensorOptions(t.dtype(), t.device())); }

}  // namespace petal
