// Optimizer base: parameter groups with per-group hyper-parameters (a name -> double map,
// as torch's param_group dicts: "lr", "weight_decay", "momentum", ...), per-parameter
// state tensors, zero_grad, step, and a flat state_dict for checkpoints.
//
// State layout (what OptimizerState holds, written by the checkpoint code):
//   tensors["state.<i>.<name>"]  per-parameter buffers (momentum_buffer, exp_avg, ...),
//                                i = index of the parameter over all groups in order
//   scalars["state.<i>.step"]    per-parameter step counts (where the rule keeps one)
//   scalars["param_groups.<g>.<option>"]  every hyper-parameter of group g
//   scalars["param_groups.<g>.num_params"]  checked on load
// SGD and AdamW update the contiguous parameters of a group with one multi-tensor launch
// (adamw_multi_tensor_step_ / sgd_multi_tensor_step_ in core/ops/optimizer.cpp), or one
// fused kernel per parameter with multi_tensor = false; non-contiguous parameter views
// fall back to core ops under NoGradGuard.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <petal/tensor.h>

namespace petal::optim {

/// A set of parameters sharing hyper-parameters. Options left out of `options` take the
/// optimizer's defaults.
struct ParamGroup {
  std::vector<Tensor> params;
  std::map<std::string, double> options;

  ParamGroup() = default;
  explicit ParamGroup(std::vector<Tensor> p, std::map<std::string, double> o = {})
      : params(std::move(p)), options(std::move(o)) {}
  /// The option's value; throws petal::Error naming it when absent.
  double get(const std::string& name) const;
  double lr() const { return get("lr"); }
  void set_lr(double lr) { options["lr"] = lr; }
};

/// Serializable optimizer state (see the layout above).
struct OptimizerState {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, double> scalars;
};

/// Splits named parameters into {decay, no-decay} groups like timm's
/// param_groups_weight_decay: 1-D tensors (biases, norm weights), names ending in ".bias"
/// and names in skip_list get weight_decay 0; the rest get weight_decay. Parameters that
/// do not require grad are left out. Empty groups are dropped.
std::vector<ParamGroup> weight_decay_groups(const std::vector<std::pair<std::string, Tensor>>& named_params,
                                            double weight_decay, const std::vector<std::string>& skip_list = {});

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// Applies one update to every parameter that has a gradient.
  virtual void step() = 0;
  /// Drops (set_to_none, torch's default) or zeroes every parameter's gradient.
  void zero_grad(bool set_to_none = true);

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  /// Adds a group (missing options filled from the defaults).
  void add_param_group(ParamGroup group);
  const std::map<std::string, double>& defaults() const { return defaults_; }

  OptimizerState state_dict() const;
  /// Restores a state from state_dict() of an optimizer over the same parameter layout;
  /// checks group count, parameter counts and state tensor shapes, naming any mismatch.
  /// State tensors are copied to each parameter's device.
  void load_state_dict(const OptimizerState& state);
  /// Just the tensors of state_dict() (for safetensors).
  std::map<std::string, Tensor> state_tensors() const { return state_dict().tensors; }

 protected:
  Optimizer(std::vector<ParamGroup> groups, std::map<std::string, double> defaults, std::string name);

  /// Per-parameter state, in the order of the parameters over all groups.
  struct ParamState {
    std::map<std::string, Tensor> tensors;
    int64_t step = 0;
    bool has_step = false;  // rules with a step count (AdamW) set it
  };
  /// State of the parameter at flat index i (moved to the parameter's device if the
  /// parameter moved since; see nn::Module::to).
  ParamState& state_at(size_t flat_index, const Tensor& param);
  const std::string& name() const { return name_; }

 private:
  std::vector<ParamGroup> groups_;
  std::map<std::string, double> defaults_;
  std::string name_;
  std::vector<ParamState> state_;
};

}  // namespace petal::optim
