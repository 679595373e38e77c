// Fused in-place optimizer steps (torch.optim.AdamW / SGD rules) on one parameter: the
// checks (same shape, dtype and device for the parameter, its gradient and its states;
// floating dtype; every operand contiguous), then one backend call that updates the
// parameter and its states in a single pass. No autograd: optimizers run these under
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

}  // namespace petal
