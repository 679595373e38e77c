// Loss modules: thin wrappers over nn::functional (softmax-cross-entropy is composed from
// log_softmax and gather today; a fused kernel takes its place later).
#include <petal/nn/loss.h>

#include <petal/nn/functional.h>

namespace petal::nn {

CrossEntropyLoss::CrossEntropyLoss(double eps) : label_smoothing(eps) {
  PETAL_CHECK(eps >= 0.0 && eps <= 1.0, "CrossEntropyLoss: label_smoothing must be in [0, 1], got ", eps);
}

Tensor CrossEntropyLoss::forward(const Tensor& logits, const Tensor& target) const {
  return functional::cross_entropy(logits, target, label_smoothing);
}

}  // namespace petal::nn
