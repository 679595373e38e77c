// Stochastic gradient descent with torch.optim.SGD's exact update:
//   g = grad + weight_decay * p
//   buf = g (first step) | momentum * buf + (1 - dampening) * g
//   g = nesterov ? g + momentum * buf : buf      (when momentum != 0)
//   p -= lr * g
#pragma once
#include <petal/optim/optimizer.h>

namespace petal::optim {

struct SGDOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  /// Update a group's parameters with one multi-tensor launch (per dtype and device);
  /// false: one fused launch per parameter. Not a group option (not in state_dict).
  bool multi_tensor = true;
};

/// Group options: "lr", "momentum", "dampening", "weight_decay", "nesterov" (0 or 1).
/// State per parameter: "momentum_buffer".
class SGD : public Optimizer {
 public:
  SGD(std::vector<Tensor> params, const SGDOptions& options);
  SGD(std::vector<ParamGroup> groups, const SGDOptions& defaults);
  void step() override;

 private:
  bool multi_tensor_;
};

}  // namespace petal::optim
