// AdamW step (torch.optim.AdamW semantics, see the header) under NoGradGuard. Contiguous
// floating parameters whose gradients have their dtype and device go through the fused
// kernels (states kept contiguous in the parameter's dtype): one multi-tensor launch per
// group and (dtype, device) run, or adamw_step_ per parameter; anything else
// (a non-contiguous parameter view) takes the composed path of core ops. Bias
// corrections are computed in double on the host per parameter.
#include <petal/optim/adamw.h>

#include <petal/autograd.h>
#include <petal/ops.h>

#include <cmath>

namespace petal::optim {

static std::map<std::string, double> adamw_defaults(const AdamWOptions& o) {
  PETAL_CHECK(o.lr >= 0.0, "AdamW: invalid learning rate ", o.lr);
  PETAL_CHECK(o.eps >= 0.0, "AdamW: invalid eps ", o.eps);
  PETAL_CHECK(o.beta1 >= 0.0 && o.beta1 < 1.0, "AdamW: invalid beta1 ", o.beta1);
  PETAL_CHECK(o.beta2 >= 0.0 && o.beta2 < 1.0, "AdamW: invalid beta2 ", o.beta2);
  PETAL_CHECK(o.weight_decay >= 0.0, "AdamW: invalid weight_decay ", o.weight_decay);
  return {{"lr", o.lr},       {"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"weight_decay", o.weight_decay},
          {"amsgrad", o.amsgrad ? 1.0 : 0.0}};
}

// The fused kernel takes contiguous operands of one dtype and device.
static bool fusable(const Tensor& param, const Tensor& grad) {
  return param.is_contiguous() && is_floating(param.dtype()) && grad.dtype() == param.dtype() &&
         grad.device() == param.device() && grad.shape() == param.shape();
}

// State `name` as a contiguous tensor of param's dtype (zeros when missing; a loaded
// state of another layout or dtype is converted once).
static Tensor& contiguous_state(std::map<std::string, Tensor>& states, const std::string& name, const Tensor& param) {
  auto it = states.find(name);
  if (it == states.end())
    it = states.emplace(name, zeros(param.shape(), TensorOptions(param.dtype(), param.device()))).first;
  Tensor& t = it->second;
  if (!t.is_contiguous() || t.dtype() != param.dtype()) t = t.to(param.dtype()).contiguous();
  return t;
}

AdamW::AdamW(std::vector<Tensor> params, const AdamWOptions& o)
    : Optimizer({ParamGroup(std::move(params))}, adamw_defaults(o), "AdamW"), multi_tensor_(o.multi_tensor) {}
AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& o)
    : Optimizer(std::move(groups), adamw_defaults(o), "AdamW"), multi_tensor_(o.multi_tensor) {}

namespace {
// Operands of one multi-tensor launch (one dtype and device).
struct AdamWList {
  std::vector<Tensor> params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs;
  std::vector<int64_t> steps;
};
}  // namespace

void AdamW::step() {
  NoGradGuard ng;
  size_t flat = 0;
  for (auto& group : param_groups()) {
    const double lr = group.get("lr"), beta1 = group.get("beta1"), beta2 = group.get("beta2"),
                 eps = group.get("eps"), weight_decay = group.get("weight_decay");
    const bool amsgrad = group.get("amsgrad") != 0.0;
    AdamWList list;
    auto flush = [&] {
      if (list.params.empty()) return;
      adamw_multi_tensor_step_(list.params, list.grads, list.exp_avgs, list.exp_avg_sqs, list.max_exp_avg_sqs,
                               list.steps, lr, beta1, beta2, eps, weight_decay, amsgrad);
      list = AdamWList();
    };
    for (auto& p : group.params) {
      const size_t i = flat++;
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      ParamState& s = state_at(i, p);
      if (!s.tensors.count("exp_avg")) {
        s.tensors["exp_avg"] = zeros_like(p.detach());
        s.tensors["exp_avg_sq"] = zeros_like(p.detach());
        if (amsgrad) s.tensors["max_exp_avg_sq"] = zeros_like(p.detach());
        s.step = 0;
      }
      s.has_step = true;
      s.step += 1;
      Tensor param = p.detach();
      if (fusable(param, grad)) {
        Tensor& m = contiguous_state(s.tensors, "exp_avg", param);
        Tensor& v = contiguous_state(s.tensors, "exp_avg_sq", param);
        Tensor none;
        Tensor& vmax = amsgrad ? contiguous_state(s.tensors, "max_exp_avg_sq", param) : none;
        if (!multi_tensor_) {
          adamw_step_(param, grad.contiguous(), m, v, vmax, lr, beta1, beta2, eps, weight_decay, s.step, amsgrad);
          continue;
        }
        if (!list.params.empty() &&
            (list.params[0].dtype() != param.dtype() || list.params[0].device() != param.device()))
          flush();
        list.params.push_back(param);
        list.grads.push_back(grad.contiguous());
        list.exp_avgs.push_back(m);
        list.exp_avg_sqs.push_back(v);
        list.max_exp_avg_sqs.push_back(vmax);
        list.steps.push_back(s.step);
        continue;
      }
      Tensor& m = s.tensors["exp_avg"];
      Tensor& v = s.tensors["exp_avg_sq"];
      if (weight_decay != 0.0) param.mul_(1.0 - lr * weight_decay);
      m.mul_(beta1).add_(grad, 1.0 - beta1);
      v.mul_(beta2).add_(mul(grad, grad), 1.0 - beta2);
      const double t = static_cast<double>(s.step);
      const double bias_correction1 = 1.0 - std::pow(beta1, t);
      const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
      Tensor second = v;
      if (amsgrad) {
        auto it = s.tensors.find("max_exp_avg_sq");
        if (it == s.tensors.end()) it = s.tensors.emplace("max_exp_avg_sq", zeros_like(v)).first;
        it->second.copy_(maximum(it->second, v));
        second = it->second;
      }
      Tensor denom = add(div(sqrt(second), bias_correction2_sqrt), eps);
      param.add_(div(m, denom), -lr / bias_correction1);
    }
    flush();
  }
}

}  // namespace petal::optim
