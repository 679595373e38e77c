// Loss modules.
#pragma once
#include <petal/tensor.h>

namespace petal::nn {

/// Mean cross entropy of logits [N, C] against int64 labels [N] with optional label
/// smoothing (torch.nn.CrossEntropyLoss(label_smoothing=eps), reduction "mean").
class CrossEntropyLoss {
 public:
  explicit CrossEntropyLoss(double label_smoothing = 0.0);
  Tensor operator()(const Tensor& logits, const Tensor& target) const { return forward(logits, target); }
  Tensor forward(const Tensor& logits, const Tensor& target) const;
  double label_smoothing;
};

}  // namespace petal::nn
