// LambdaLR and the cosine factors.
#include <petal/optim/schedule.h>

#include <algorithm>
#include <cmath>

namespace petal::optim {

LambdaLR::LambdaLR(Optimizer& optimizer, Lambda lambda)
    : LambdaLR(optimizer, std::vector<Lambda>(optimizer.param_groups().size(), lambda)) {}

LambdaLR::LambdaLR(Optimizer& optimizer, std::vector<Lambda> lambdas) : optimizer_(optimizer), lambdas_(std::move(lambdas)) {
  auto& groups = optimizer_.param_groups();
  PETAL_CHECK(lambdas_.size() == groups.size(), "LambdaLR: got ", lambdas_.size(), " lambdas for ", groups.size(),
              " parameter groups");
  for (const auto& l : lambdas_) PETAL_CHECK(static_cast<bool>(l), "LambdaLR: empty lambda");
  for (auto& g : groups) {
    g.options.emplace("initial_lr", g.lr());  // as torch: keep an existing initial_lr
    base_lrs_.push_back(g.get("initial_lr"));
  }
  last_epoch_ = 0;
  apply();
}

void LambdaLR::apply() {
  auto& groups = optimizer_.param_groups();
  last_lr_.assign(groups.size(), 0.0);
  for (size_t g = 0; g < groups.size(); ++g) {
    last_lr_[g] = base_lrs_[g] * lambdas_[g](last_epoch_);
    groups[g].set_lr(last_lr_[g]);
  }
}

void LambdaLR::step() {
  ++last_epoch_;
  apply();
}

std::map<std::string, double> LambdaLR::state_dict() const {
  std::map<std::string, double> s{{"last_epoch", static_cast<double>(last_epoch_)}};
  for (size_t g = 0; g < base_lrs_.size(); ++g) s["base_lr." + std::to_string(g)] = base_lrs_[g];
  return s;
}

void LambdaLR::load_state_dict(const std::map<std::string, double>& state) {
  auto it = state.find("last_epoch");
  PETAL_CHECK(it != state.end(), "LambdaLR::load_state_dict: missing 'last_epoch'");
  std::vector<double> base(base_lrs_.size());
  for (size_t g = 0; g < base.size(); ++g) {
    auto b = state.find("base_lr." + std::to_string(g));
    PETAL_CHECK(b != state.end(), "LambdaLR::load_state_dict: missing 'base_lr.", g, "'");
    base[g] = b->second;
  }
  PETAL_CHECK(!state.count("base_lr." + std::to_string(base.size())), "LambdaLR::load_state_dict: the state has more ",
              "groups than the optimizer (", base.size(), ")");
  last_epoch_ = static_cast<int64_t>(it->second);
  base_lrs_ = base;
  for (size_t g = 0; g < base.size(); ++g) optimizer_.param_groups()[g].options["initial_lr"] = base[g];
  apply();
}

std::function<double(int64_t)> cosine_lf(int64_t epochs, double lrf) {
  PETAL_CHECK(epochs > 0, "cosine_lf: epochs must be positive, got ", epochs);
  return [epochs, lrf](int64_t x) {
    return ((1.0 + std::cos(static_cast<double>(x) * M_PI / static_cast<double>(epochs))) / 2.0) * (1.0 - lrf) + lrf;
  };
}

std::function<double(int64_t)> warmup_cosine_lf(int64_t warmup_steps, int64_t total_steps, double lrf,
                                                double warmup_start_factor) {
  PETAL_CHECK(warmup_steps >= 0 && total_steps > warmup_steps, "warmup_cosine_lf: need 0 <= warmup_steps (",
              warmup_steps, ") < total_steps (", total_steps, ")");
  return [=](int64_t x) {
    if (x < warmup_steps)
      return warmup_start_factor +
             (1.0 - warmup_start_factor) * static_cast<double>(x) / static_cast<double>(warmup_steps);
    double progress = std::min(1.0, static_cast<double>(x - warmup_steps) /
                                        static_cast<double>(total_steps - warmup_steps));
    return ((1.0 + std::cos(M_PI * progress)) / 2.0) * (1.0 - lrf) + lrf;
  };
}

}  // namespace petal::optim
