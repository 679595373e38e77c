// clip_grad_norm_: the total norm of all gradients and the clipping scale, computed on the
// gradients' device with no host round trip (no .item() per parameter, none at all unless
// the caller reads the returned tensor). Per-tensor partial sums of |g|^p (a reduction each)
// are cast to f64 and added on the device; the scale min(1, max_norm / (total + 1e-6)) is a
// 0-dim device tensor that every gradient is multiplied by in place (a no-op factor of 1 when
// the norm is within bounds, so there is no data-dependent branch on the host).
#include <petal/optim/clip_grad.h>

#include <petal/autograd.h>
#include <petal/ops.h>

#include <algorithm>
#include <cmath>

namespace petal::optim {

Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  PETAL_CHECK(norm_type > 0.0, "clip_grad_norm: norm_type must be positive, got ", norm_type);
  PETAL_CHECK(max_norm >= 0.0, "clip_grad_norm: max_norm must be non-negative, got ", max_norm);
  NoGradGuard ng;
  std::vector<Tensor> grads;
  for (const auto& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return zeros({}, TensorOptions(DType::f64, kCPU));
  const Device device = grads.front().device();
  Tensor total;
  for (const auto& g : grads) {
    // Reductions accumulate in the gradient's accumulator; the partials add up in f64.
    Tensor part;
    if (std::isinf(norm_type))
      part = max(abs(g));
    else
      part = norm_type == 2.0 ? sum(square(g)) : sum(pow(abs(g), norm_type));
    part = part.to(device, DType::f64);
    total = total.defined() ? (std::isinf(norm_type) ? maximum(total, part) : add(total, part)) : part;
  }
  if (!std::isinf(norm_type)) total = pow(total, 1.0 / norm_type);
  const Tensor scale = clamp_max(div(full({}, max_norm, TensorOptions(DType::f64, device)), add(total, 1e-6)), 1.0);
  for (auto& g : grads) g.mul_(scale.to(g.device(), g.dtype()));
  return total;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type) {
  return clip_grad_norm_(params, max_norm, norm_type).item();
}

}  // namespace petal::optim
