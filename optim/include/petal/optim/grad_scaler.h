// Dynamic loss scaling for f16 mixed precision (torch.amp.GradScaler semantics): the loss
// is multiplied by a scale before backward so small f16 gradients do not flush to zero;
// unscale_ divides an optimizer's gradients by the scale and records whether any is inf
// or NaN; step skips the optimizer's update when one was; update grows the scale by
// growth_factor after growth_interval clean steps in a row and multiplies it by
// backoff_factor (resetting the count) after a step with non-finite gradients.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include <petal/optim/optimizer.h>
#include <petal/tensor.h>

namespace petal::optim {

struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
  /// A disabled scaler is a pass-through: scale returns the loss, step just steps.
  bool enabled = true;
};

class GradScaler {
 public:
  explicit GradScaler(const GradScalerOptions& options = {});

  /// loss * scale (in f32 for a 16-bit loss, the loss itself when disabled).
  Tensor scale(const Tensor& loss) const;
  /// Divides the gradients of optimizer's parameters by the scale in place and records
  /// whether any was inf/NaN; at most once per optimizer between update() calls.
  void unscale_(Optimizer& optimizer);
  /// Unscales (unless unscale_ was called) and steps the optimizer unless its gradients
  /// held an inf/NaN; returns whether it stepped.
  bool step(Optimizer& optimizer);
  /// Adjusts the scale from the steps since the last update (backoff if any saw inf/NaN,
  /// else count towards growth) and resets the per-optimizer state.
  void update();

  double get_scale() const { return scale_; }
  int64_t growth_tracker() const { return growth_tracker_; }
  bool is_enabled() const { return options_.enabled; }
  /// {"scale", "growth_tracker"} for checkpoints.
  std::map<std::string, double> state_dict() const;
  void load_state_dict(const std::map<std::string, double>& state);

 private:
  struct OptimizerStage {
    bool unscaled = false;
    bool stepped = false;
    bool found_inf = false;
  };
  GradScalerOptions options_;
  double scale_;
  int64_t growth_tracker_ = 0;
  std::map<const Optimizer*, OptimizerStage> stages_;
};

}  // namespace petal::optim
