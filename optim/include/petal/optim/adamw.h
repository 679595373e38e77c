// AdamW with torch.optim.AdamW's exact update (t = per-parameter step count):
//   p *= 1 - lr * weight_decay                      (decoupled decay)
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   v_max = max(v_max, v)                           (amsgrad only; used instead of v)
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
#pragma once
#include <petal/optim/optimizer.h>

namespace petal::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  /// Update a group's parameters with one multi-tensor launch (per dtype and device);
  /// false: one fused launch per parameter. Not a group option (not in state_dict).
  bool multi_tensor = true;
};

/// Group options: "lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad" (0 or 1).
/// State per parameter: "exp_avg", "exp_avg_sq", "max_exp_avg_sq" (amsgrad), step count.
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Tensor> params, const AdamWOptions& options);
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& defaults);
  void step() override;

 private:
  bool multi_tensor_;
};

}  // namespace petal::optim
