// Fused in-place optimizer steps (torch.optim.AdamW / SGD rules) on one parameter or on a
// list of them: the checks (same shape, dtype and device for the parameter, its gradient
// and its states; floating dtype; every operand contiguous; one dtype and device for a
// whole list), then one backend call that updates the parameters and their states in a
// single pass. No autograd: optimizers run these under
// NoGradGuard on detached parameters.
#include <petal/ops.h>

#include "core/src/internal.h"

namespace petal {

namespace {

// t must be defined, contiguous and shaped, typed and placed like param.
void check_operand(const char* op, const char* name, const Tensor& param, const Tensor& t) {
  PETAL_CHECK(t.defined(), op, ": ", name, " is undefined");
  PETAL_CHECK(t.shape() == param.shape(), op, ": ", name, " has shape ", shape_str(t.shape()),
              " but the parameter has shape ", shape_str(param.shape()));
  PETAL_CHECK(t.dtype() == param.dtype(), op, ": ", name, " has dtype ", dtype_name(t.dtype()),
              " but the parameter has dtype ", dtype_name(param.dtype()));
  detail::check_same_device(op, param, t);
  PETAL_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous (shape ", shape_str(t.shape()), ")");
}

void check_param(const char* op, const Tensor& param) {
  detail::check_defined(op, param);
  detail::check_floating(op, param);
  detail::check_inplace(op, param);
  PETAL_CHECK(param.is_contiguous(), op, ": the parameter must be contiguous (shape ", shape_str(param.shape()), ")");
}

}  // namespace

void adamw_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, Tensor& max_exp_avg_sq,
                 double lr, double beta1, double beta2, double eps, double weight_decay, int64_t step, bool amsgrad) {
  const char* op = "adamw_step_";
  check_param(op, param);
  check_operand(op, "grad", param, grad);
  check_operand(op, "exp_avg", param, exp_avg);
  check_operand(op, "exp_avg_sq", param, exp_avg_sq);
  if (amsgrad) check_operand(op, "max_exp_avg_sq", param, max_exp_avg_sq);
  PETAL_CHECK(step >= 1, op, ": step counts from 1, got ", step);
  if (param.numel() == 0) return;
  kernels::AdamWArgs args;
  args.lr = lr;
  args.beta1 = beta1;
  args.beta2 = beta2;
  args.eps = eps;
  args.weight_decay = weight_decay;
  args.step = step;
  args.amsgrad = amsgrad;
  detail::backend_of(param).adamw_update(param.data_ptr(), grad.data_ptr(), exp_avg.data_ptr(), exp_avg_sq.data_ptr(),
                                         amsgrad ? max_exp_avg_sq.data_ptr() : nullptr, param.dtype(), param.numel(),
                                         args);
}

void sgd_step_(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, double lr, double momentum,
               double dampening, double weight_decay, bool nesterov, bool first_step) {
  const char* op = "sgd_step_";
  check_param(op, param);
  check_operand(op, "grad", param, grad);
  if (momentum != 0.0) check_operand(op, "momentum_buffer", param, momentum_buffer);
  PETAL_CHECK(!nesterov || momentum != 0.0, op, ": nesterov needs a momentum");
  if (param.numel() == 0) return;
  kernels::SgdArgs args;
  args.lr = lr;
  args.momentum = momentum;
  args.dampening = dampening;
  args.weight_decay = weight_decay;
  args.nesterov = nesterov;
  args.first_step = first_step;
  detail::backend_of(param).sgd_update(param.data_ptr(), grad.data_ptr(),
                                       momentum != 0.0 ? momentum_buffer.data_ptr() : nullptr, param.dtype(),
                                       param.numel(), args);
}

namespace {

// Checks list sizes and that every parameter shares the first one's dtype and device.
void check_list(const char* op, const std::vector<Tensor>& params, const char* name, size_t size) {
  PETAL_CHECK(size == params.size(), op, ": ", params.size(), " parameters but ", size, " ", name);
}

void check_same_list(const char* op, const std::vector<Tensor>& params, size_t i) {
  check_param(op, params[i]);
  PETAL_CHECK(params[i].dtype() == params[0].dtype(), op, ": parameter ", i, " has dtype ",
              dtype_name(params[i].dtype()), " but parameter 0 has ", dtype_name(params[0].dtype()),
              " (one list holds one dtype)");
  detail::check_same_device(op, params[0], params[i]);
}

}  // namespace

void adamw_multi_tensor_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                              const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs,
                              const std::vector<Tensor>& max_exp_avg_sqs, const std::vector<int64_t>& steps, double lr,
                              double beta1, double beta2, double eps, double weight_decay, bool amsgrad) {
  const char* op = "adamw_multi_tensor_step_";
  check_list(op, params, "gradients", grads.size());
  check_list(op, params, "exp_avg states", exp_avgs.size());
  check_list(op, params, "exp_avg_sq states", exp_avg_sqs.size());
  if (amsgrad) check_list(op, params, "max_exp_avg_sq states", max_exp_avg_sqs.size());
  check_list(op, params, "step counts", steps.size());
  if (params.empty()) return;
  std::vector<kernels::OptimizerTensor> list;
  list.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    check_same_list(op, params, i);
    check_operand(op, "grad", params[i], grads[i]);
    check_operand(op, "exp_avg", params[i], exp_avgs[i]);
    check_operand(op, "exp_avg_sq", params[i], exp_avg_sqs[i]);
    if (amsgrad) check_operand(op, "max_exp_avg_sq", params[i], max_exp_avg_sqs[i]);
    PETAL_CHECK(steps[i] >= 1, op, ": step counts from 1, got ", steps[i], " for parameter ", i);
    if (params[i].numel() == 0) continue;
    kernels::OptimizerTensor t;
    t.param = params[i].data_ptr();
    t.grad = grads[i].data_ptr();
    t.state0 = exp_avgs[i].data_ptr();
    t.state1 = exp_avg_sqs[i].data_ptr();
    t.state2 = amsgrad ? max_exp_avg_sqs[i].data_ptr() : nullptr;
    t.n = params[i].numel();
    t.step = steps[i];
    list.push_back(t);
  }
  if (list.empty()) return;
  kernels::AdamWArgs args;
  args.lr = lr;
  args.beta1 = beta1;
  args.beta2 = beta2;
  args.eps = eps;
  args.weight_decay = weight_decay;
  args.amsgrad = amsgrad;
  detail::backend_of(params[0]).adamw_update_multi_tensor(list.data(), static_cast<int64_t>(list.size()),
                                                          params[0].dtype(), args);
}

void sgd_multi_tensor_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                            const std::vector<Tensor>& momentum_buffers, const std::vector<bool>& first_steps,
                            double lr, double momentum, double dampening, double weight_decay, bool nesterov) {
  const char* op = "sgd_multi_tensor_step_";
  check_list(op, params, "gradients", grads.size());
  if (momentum != 0.0) {
    check_list(op, params, "momentum buffers", momentum_buffers.size());
    check_list(op, params, "first-step flags", first_steps.size());
  }
  PETAL_CHECK(!nesterov || momentum != 0.0, op, ": nesterov needs a momentum");
  if (params.empty()) return;
  std::vector<kernels::OptimizerTensor> list;
  list.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    check_same_list(op, params, i);
    check_operand(op, "grad", params[i], grads[i]);
    if (momentum != 0.0) check_operand(op, "momentum_buffer", params[i], momentum_buffers[i]);
    if (params[i].numel() == 0) continue;
    kernels::OptimizerTensor t;
    t.param = params[i].data_ptr();
    t.grad = grads[i].data_ptr();
    t.state0 = momentum != 0.0 ? momentum_buffers[i].data_ptr() : nullptr;
    t.n = params[i].numel();
    t.first_step = momentum != 0.0 && first_steps[i];
    list.push_back(t);
  }
  if (list.empty()) return;
  kernels::SgdArgs args;
  args.lr = lr;
  args.momentum = momentum;
  args.dampening = dampening;
  args.weight_decay = weight_decay;
  args.nesterov = nesterov;
  detail::backend_of(params[0]).sgd_update_multi_tensor(list.data(), static_cast<int64_t>(list.size()),
                                                        params[0].dtype(), args);
}

}  // namespace petal
