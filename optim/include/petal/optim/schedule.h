// Learning-rate schedules (torch.optim.lr_scheduler semantics) and the seed's factors.
// A schedule scales each group's base learning rate (its lr when the schedule was built,
// stored as the group option "initial_lr") by a factor of the step index; the caller
// decides whether step() is called once per epoch or once per iteration.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <petal/optim/optimizer.h>

namespace petal::optim {

/// lr = initial_lr * lambda(last_epoch). Construction applies lambda(0) (last_epoch = 0);
/// each step() advances last_epoch by one and applies the new factor.
class LambdaLR {
 public:
  using Lambda = std::function<double(int64_t)>;
  /// One lambda for every group.
  LambdaLR(Optimizer& optimizer, Lambda lambda);
  /// One lambda per group.
  LambdaLR(Optimizer& optimizer, std::vector<Lambda> lambdas);

  void step();
  /// The learning rates last applied, one per group.
  const std::vector<double>& get_last_lr() const { return last_lr_; }
  int64_t last_epoch() const { return last_epoch_; }
  const std::vector<double>& base_lrs() const { return base_lrs_; }

  /// {"last_epoch": n, "base_lr.<g>": ...} for checkpoints.
  std::map<std::string, double> state_dict() const;
  /// Restores last_epoch and base lrs and re-applies the factor of last_epoch.
  void load_state_dict(const std::map<std::string, double>& state);

 private:
  void apply();
  Optimizer& optimizer_;
  std::vector<Lambda> lambdas_;
  std::vector<double> base_lrs_;
  std::vector<double> last_lr_;
  int64_t last_epoch_ = 0;
};

/// The seed's cosine factor: lf(x) = ((1 + cos(x * pi / epochs)) / 2) * (1 - lrf) + lrf,
/// going from 1 at x = 0 to lrf at x = epochs.
std::function<double(int64_t)> cosine_lf(int64_t epochs, double lrf);

/// Linear warmup then cosine: for x < warmup_steps the factor rises linearly from
/// warmup_start_factor (x = 0) towards 1 (reached at x = warmup_steps); afterwards
/// ((1 + cos(pi * (x - warmup) / (total - warmup))) / 2) * (1 - lrf) + lrf, held at lrf
/// beyond total_steps. Steps are epochs or iterations, whichever step() counts.
std::function<double(int64_t)> warmup_cosine_lf(int64_t warmup_steps, int64_t total_steps, double lrf,
                                                 double warmup_start_factor = 0.0);

}  // namespace petal::optim
