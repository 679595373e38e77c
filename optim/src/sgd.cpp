// SGD step (torch.optim.SGD semantics, see the header) under NoGradGuard. Contiguous
// floating parameters whose gradients have their dtype and device go through the fused
// kernels (momentum buffers kept contiguous in the parameter's dtype): one multi-tensor
// launch per group and (dtype, device) run, or sgd_step_ per parameter; anything
// else (a non-contiguous parameter view) takes the composed path of core ops.
// Parameters without a gradient are skipped.
#include <petal/optim/sgd.h>

#include <petal/autograd.h>
#include <petal/ops.h>

namespace petal::optim {

static std::map<std::string, double> sgd_defaults(const SGDOptions& o) {
  PETAL_CHECK(o.lr >= 0.0, "SGD: invalid learning rate ", o.lr);
  PETAL_CHECK(o.momentum >= 0.0, "SGD: invalid momentum ", o.momentum);
  PETAL_CHECK(o.weight_decay >= 0.0, "SGD: invalid weight_decay ", o.weight_decay);
  PETAL_CHECK(!o.nesterov || (o.momentum > 0.0 && o.dampening == 0.0),
              "SGD: nesterov momentum requires a momentum and zero dampening");
  return {{"lr", o.lr},
          {"momentum", o.momentum},
          {"dampening", o.dampening},
          {"weight_decay", o.weight_decay},
          {"nesterov", o.nesterov ? 1.0 : 0.0}};
}

SGD::SGD(std::vector<Tensor> params, const SGDOptions& o)
    : Optimizer({ParamGroup(std::move(params))}, sgd_defaults(o), "SGD"), multi_tensor_(o.multi_tensor) {}
SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& o)
    : Optimizer(std::move(groups), sgd_defaults(o), "SGD"), multi_tensor_(o.multi_tensor) {}

namespace {
// Operands of one multi-tensor launch (one dtype and device).
struct SgdList {
  std::vector<Tensor> params, grads, buffers;
  std::vector<bool> first_steps;
};
}  // namespace

void SGD::step() {
  NoGradGuard ng;
  size_t flat = 0;
  for (auto& group : param_groups()) {
    const double lr = group.get("lr"), momentum = group.get("momentum"), dampening = group.get("dampening"),
                 weight_decay = group.get("weight_decay");
    const bool nesterov = group.get("nesterov") != 0.0;
    SgdList list;
    auto flush = [&] {
      if (list.params.empty()) return;
      sgd_multi_tensor_step_(list.params, list.grads, list.buffers, list.first_steps, lr, momentum, dampening,
                             weight_decay, nesterov);
      list = SgdList();
    };
    for (auto& p : group.params) {
      const size_t i = flat++;
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      Tensor param = p.detach();
      if (param.is_contiguous() && is_floating(param.dtype()) && grad.dtype() == param.dtype() &&
          grad.device() == param.device() && grad.shape() == param.shape()) {
        Tensor none;
        Tensor* buffer = &none;
        bool first_step = false;
        if (momentum != 0.0) {
          auto& states = state_at(i, p).tensors;
          auto it = states.find("momentum_buffer");
          first_step = it == states.end();
          if (first_step)
            it = states.emplace("momentum_buffer", empty(param.shape(), TensorOptions(param.dtype(), param.device())))
                     .first;
          else if (!it->second.is_contiguous() || it->second.dtype() != param.dtype())
            it->second = it->second.to(param.dtype()).contiguous();
          buffer = &it->second;
        }
        if (!multi_tensor_) {
          sgd_step_(param, grad.contiguous(), *buffer, lr, momentum, dampening, weight_decay, nesterov, first_step);
          continue;
        }
        if (!list.params.empty() &&
            (list.params[0].dtype() != param.dtype() || list.params[0].device() != param.device()))
          flush();
        list.params.push_back(param);
        list.grads.push_back(grad.contiguous());
        list.buffers.push_back(*buffer);
        list.first_steps.push_back(first_step);
        continue;
      }
      Tensor d = grad;
      if (weight_decay != 0.0) d = add(d, p.detach(), weight_decay);
      if (momentum != 0.0) {
        ParamState& s = state_at(i, p);
        auto it = s.tensors.find("momentum_buffer");
        if (it == s.tensors.end()) {
          Tensor buf = d.clone();
          s.tensors["momentum_buffer"] = buf;
          it = s.tensors.find("momentum_buffer");
        } else {
          it->second.mul_(momentum).add_(d, 1.0 - dampening);
        }
        d = nesterov ? add(d, it->second, momentum) : it->second;
      }
      Tensor target = p.detach();
      target.add_(d, -lr);
    }
    flush();
  }
}

}  // namespace petal::optim
