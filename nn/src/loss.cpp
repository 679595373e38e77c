// Loss modules: CrossEntropyLoss runs the fused softmax-cross-entropy op
// (core/ops/cross_entropy.cpp); nn::functional::cross_entropy keeps the composed form.
#include <petal/nn/loss.h>

#include <petal/ops.h>

namespace petal::nn {

CrossEntropyLoss::CrossEntropyLoss(double eps) : label_smoothing(eps) {
  PETAL_CHECK(eps >= 0.0 && eps <= 1.0, "CrossEntropyLoss: label_smoothing must be in [0, 1], got ", eps);
}

Tensor CrossEntropyLoss::forward(const Tensor& logits, const Tensor& target) const {
  return petal::cross_entropy(logits, target, label_smoothing);
}

}  // namespace petal::nn
