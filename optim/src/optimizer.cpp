// Optimizer base: groups, defaults, zero_grad, the flat state_dict and its loader.
#include <petal/optim/optimizer.h>

#include <petal/autograd.h>

#include <algorithm>
#include <set>
#include <sstream>

namespace petal::optim {

double ParamGroup::get(const std::string& name) const {
  auto it = options.find(name);
  PETAL_CHECK(it != options.end(), "ParamGroup: no option '", name, "'");
  return it->second;
}

std::vector<ParamGroup> weight_decay_groups(const std::vector<std::pair<std::string, Tensor>>& named_params,
                                            double weight_decay, const std::vector<std::string>& skip_list) {
  ParamGroup decay, no_decay;
  decay.options["weight_decay"] = weight_decay;
  no_decay.options["weight_decay"] = 0.0;
  auto ends_with = [](const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  for (const auto& [name, p] : named_params) {
    if (!p.requires_grad()) continue;
    bool skip = p.dim() <= 1 || ends_with(name, ".bias") ||
                std::find(skip_list.begin(), skip_list.end(), name) != skip_list.end();
    (skip ? no_decay : decay).params.push_back(p);
  }
  std::vector<ParamGroup> out;
  if (!no_decay.params.empty()) out.push_back(no_decay);
  if (!decay.params.empty()) out.push_back(decay);
  return out;
}

Optimizer::Optimizer(std::vector<ParamGroup> groups, std::map<std::string, double> defaults, std::string name)
    : defaults_(std::move(defaults)), name_(std::move(name)) {
  PETAL_CHECK(!groups.empty(), name_, ": got an empty parameter list");
  for (auto& g : groups) add_param_group(std::move(g));
}

void Optimizer::add_param_group(ParamGroup group) {
  PETAL_CHECK(!group.params.empty(), name_, ": parameter group ", groups_.size(), " has no parameters");
  std::set<TensorImpl*> seen;
  for (const auto& g : groups_)
    for (const auto& p : g.params) seen.insert(p.impl().get());
  for (const auto& p : group.params) {
    PETAL_CHECK(p.defined(), name_, ": undefined parameter in group ", groups_.size());
    PETAL_CHECK(p.is_floating_point(), name_, ": parameters must be floating point, got ", dtype_name(p.dtype()));
    PETAL_CHECK(p.is_leaf(), name_, ": can only optimize leaf tensors");
    PETAL_CHECK(seen.insert(p.impl().get()).second, name_, ": a parameter appears in more than one group");
  }
  for (const auto& [k, v] : group.options)
    PETAL_CHECK(defaults_.count(k), name_, ": unknown option '", k, "' in parameter group ", groups_.size());
  for (const auto& [k, v] : defaults_) group.options.emplace(k, v);
  state_.resize(state_.size() + group.params.size());
  groups_.push_back(std::move(group));
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard ng;
  for (auto& g : groups_) {
    for (auto& p : g.params) {
      Tensor gr = p.grad();
      if (!gr.defined()) continue;
      if (set_to_none) {
        p.zero_grad();
      } else {
        gr.zero_();
      }
    }
  }
}

Optimizer::ParamState& Optimizer::state_at(size_t i, const Tensor& param) {
  ParamState& s = state_.at(i);
  for (auto& [k, t] : s.tensors)
    if (t.device() != param.device()) t = t.to(param.device());
  return s;
}

OptimizerState Optimizer::state_dict() const {
  OptimizerState out;
  size_t i = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string gp = "param_groups." + std::to_string(g) + ".";
    for (const auto& [k, v] : groups_[g].options) out.scalars[gp + k] = v;
    out.scalars[gp + "num_params"] = static_cast<double>(groups_[g].params.size());
    for (size_t j = 0; j < groups_[g].params.size(); ++j, ++i) {
      const ParamState& s = state_[i];
      const std::string sp = "state." + std::to_string(i) + ".";
      for (const auto& [k, t] : s.tensors) out.tensors[sp + k] = t.detach();
      if (s.has_step) out.scalars[sp + "step"] = static_cast<double>(s.step);
    }
  }
  return out;
}

void Optimizer::load_state_dict(const OptimizerState& st) {
  std::vector<std::string> errors;
  // Flat index -> parameter.
  std::vector<Tensor> flat;
  for (const auto& g : groups_)
    for (const auto& p : g.params) flat.push_back(p);
  for (size_t g = 0; g < groups_.size(); ++g) {
    auto it = st.scalars.find("param_groups." + std::to_string(g) + ".num_params");
    if (it == st.scalars.end()) {
      errors.push_back("param_groups." + std::to_string(g) + ": missing from the state");
    } else if (static_cast<size_t>(it->second) != groups_[g].params.size()) {
      errors.push_back("param_groups." + std::to_string(g) + ": state has " + std::to_string(int64_t(it->second)) +
                       " parameters, optimizer has " + std::to_string(groups_[g].params.size()));
    }
  }
  if (st.scalars.count("param_groups." + std::to_string(groups_.size()) + ".num_params"))
    errors.push_back("state has more parameter groups than the optimizer (" + std::to_string(groups_.size()) + ")");

  auto parse_state_key = [&](const std::string& key, size_t& index, std::string& rest) {
    if (key.rfind("state.", 0) != 0) return false;
    size_t dot = key.find('.', 6);
    if (dot == std::string::npos) return false;
    try {
      index = std::stoul(key.substr(6, dot - 6));
    } catch (...) {
      return false;
    }
    rest = key.substr(dot + 1);
    return true;
  };
  std::vector<ParamState> fresh(flat.size());
  for (const auto& [key, t] : st.tensors) {
    size_t i;
    std::string rest;
    if (!parse_state_key(key, i, rest) || i >= flat.size()) {
      errors.push_back(key + ": not a state entry of this optimizer");
      continue;
    }
    if (!t.defined() || t.shape() != flat[i].shape()) {
      errors.push_back(key + ": shape " + (t.defined() ? shape_str(t.shape()) : std::string("undefined")) +
                       " vs parameter shape " + shape_str(flat[i].shape()));
      continue;
    }
    NoGradGuard ng;
    Tensor c = empty(flat[i].shape(), TensorOptions(flat[i].dtype(), flat[i].device()));
    c.copy_(t);
    fresh[i].tensors[rest] = c;
  }
  for (const auto& [key, v] : st.scalars) {
    if (key.rfind("param_groups.", 0) == 0) continue;
    size_t i;
    std::string rest;
    if (!parse_state_key(key, i, rest) || i >= flat.size() || rest != "step") {
      errors.push_back(key + ": not a state entry of this optimizer");
      continue;
    }
    fresh[i].step = static_cast<int64_t>(v);
    fresh[i].has_step = true;
  }
  if (!errors.empty()) {
    std::ostringstream os;
    os << name_ << "::load_state_dict: the state does not match this optimizer:";
    for (const auto& e : errors) os << "\n  " << e;
    throw Error(os.str());
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    const std::string gp = "param_groups." + std::to_string(g) + ".";
    for (auto& [k, v] : groups_[g].options) {
      auto it = st.scalars.find(gp + k);
      if (it != st.scalars.end()) v = it->second;
    }
    // Options the scheduler adds (initial_lr) come back too.
    for (const auto& [key, v] : st.scalars)
      if (key.rfind(gp, 0) == 0 && key != gp + "num_params") groups_[g].options[key.substr(gp.size())] = v;
  }
  state_ = std::move(fresh);
}

}  // namespace petal::optim
