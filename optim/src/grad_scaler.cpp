// GradScaler (see the header). Non-finite detection without a host round trip per
// gradient: sum(g * 0) is 0 for a finite g and NaN as soon as one element is inf or NaN;
// those sums are added per device on the device and read once per device in unscale_.
// The scale itself is a host double (the step decision needs the host anyway).
#include <petal/optim/grad_scaler.h>

#include <petal/autograd.h>
#include <petal/ops.h>

#include <cmath>

namespace petal::optim {

GradScaler::GradScaler(const GradScalerOptions& o) : options_(o), scale_(o.init_scale) {
  PETAL_CHECK(o.init_scale > 0.0 && std::isfinite(o.init_scale), "GradScaler: init_scale must be positive, got ",
              o.init_scale);
  PETAL_CHECK(o.growth_factor > 1.0, "GradScaler: growth_factor must be > 1, got ", o.growth_factor);
  PETAL_CHECK(o.backoff_factor > 0.0 && o.backoff_factor < 1.0, "GradScaler: backoff_factor must be in (0, 1), got ",
              o.backoff_factor);
  PETAL_CHECK(o.growth_interval > 0, "GradScaler: growth_interval must be positive, got ", o.growth_interval);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  PETAL_CHECK(loss.defined(), "GradScaler::scale: undefined loss");
  if (!options_.enabled) return loss;
  PETAL_CHECK(loss.is_floating_point(), "GradScaler::scale: the loss must be floating point, got ",
              dtype_name(loss.dtype()));
  const Tensor wide = loss.dtype() == DType::f64 ? loss : loss.to(DType::f32);
  return mul(wide, scale_);
}

void GradScaler::unscale_(Optimizer& optimizer) {
  if (!options_.enabled) return;
  OptimizerStage& st = stages_[&optimizer];
  PETAL_CHECK(!st.unscaled, "GradScaler::unscale_: already called on this optimizer since the last update()");
  PETAL_CHECK(!st.stepped, "GradScaler::unscale_: called after step() on this optimizer");
  NoGradGuard ng;
  const double inv_scale = 1.0 / scale_;
  std::map<std::string, Tensor> probes;  // per device: sum over gradients of sum(g * 0)
  for (auto& group : optimizer.param_groups()) {
    for (auto& p : group.params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      g.mul_(inv_scale);
      Tensor probe = sum(mul(g, 0.0)).to(DType::f64);
      auto it = probes.find(g.device().str());
      if (it == probes.end())
        probes.emplace(g.device().str(), probe);
      else
        it->second = add(it->second, probe);
    }
  }
  bool found = false;
  for (const auto& [device, probe] : probes) found = found || !std::isfinite(probe.item<double>());
  st.unscaled = true;
  st.found_inf = found;
}

bool GradScaler::step(Optimizer& optimizer) {
  if (!options_.enabled) {
    optimizer.step();
    return true;
  }
  OptimizerStage& st = stages_[&optimizer];
  PETAL_CHECK(!st.stepped, "GradScaler::step: already called on this optimizer since the last update()");
  if (!st.unscaled) unscale_(optimizer);
  OptimizerStage& after = stages_[&optimizer];
  after.stepped = true;
  if (after.found_inf) return false;
  optimizer.step();
  return true;
}

void GradScaler::update() {
  if (!options_.enabled) return;
  PETAL_CHECK(!stages_.empty(), "GradScaler::update: no optimizer was unscaled or stepped since the last update()");
  bool found = false;
  for (const auto& [opt, st] : stages_) found = found || st.found_inf;
  if (found) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
  stages_.clear();
}

std::map<std::string, double> GradScaler::state_dict() const {
  return {{"scale", scale_}, {"growth_tracker", static_cast<double>(growth_tracker_)}};
}

void GradScaler::load_state_dict(const std::map<std::string, double>& state) {
  auto s = state.find("scale"), g = state.find("growth_tracker");
  PETAL_CHECK(s != state.end() && g != state.end(), "GradScaler::load_state_dict: needs 'scale' and 'growth_tracker'");
  PETAL_CHECK(s->second > 0.0 && std::isfinite(s->second), "GradScaler::load_state_dict: invalid scale ", s->second);
  scale_ = s->second;
  growth_tracker_ = static_cast<int64_t>(g->second);
  stages_.clear();
}

}  // namespace petal::optim
