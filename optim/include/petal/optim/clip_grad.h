// Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_).
#pragma once
#include <vector>

#include <petal/tensor.h>

namespace petal::optim {

/// Total norm of the gradients of params (those without a gradient are skipped) as if
/// concatenated into one vector; norm_type may be INFINITY. When the total exceeds
/// max_norm, every gradient is scaled in place by max_norm / (total + 1e-6). Returns the
/// total norm before clipping as a 0-dim f64 tensor on the gradients' device: nothing waits
/// for the device (read it with .item() only when needed, e.g. for a progress line).
Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);
/// clip_grad_norm_ returning the total norm as a double (one host synchronization).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0);

}  // namespace petal::optim
