// clip_grad_norm: per-tensor sums of |g|^p reduced on the device, combined in double on the host.
#include <petal/optim/clip_grad.h>

#include <petal/autograd.h>
#include <petal/ops.h>

#include <algorithm>
#include <cmath>

namespace petal::optim {

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  PETAL_CHECK(norm_type > 0.0, "clip_grad_norm: norm_type must be positive, got ", norm_type);
  NoGradGuard ng;
  std::vector<Tensor> grads;
  for (const auto& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  double total = 0.0;
  if (std::isinf(norm_type)) {
    for (const auto& g : grads) total = std::max(total, max(abs(g)).item());
  } else {
    for (const auto& g : grads) {
      // Reductions accumulate in double; per-element terms stay in the gradient's dtype.
      Tensor part = norm_type == 2.0 ? sum(square(g)) : sum(pow(abs(g), norm_type));
      total += part.item();
    }
    total = std::pow(total, 1.0 / norm_type);
  }
  double coef = max_norm / (total + 1e-6);
  if (coef < 1.0)
    for (auto& g : grads) g.mul_(coef);
  return total;
}

}  // namespace petal::optim
