// cross_entropy (softmax cross-entropy with label smoothing and ignore_index, mean over
// the rows that are not ignored, as torch.nn.functional.cross_entropy), beside its
// backward rule. The fused kernel writes one loss and one lse per row (statistics dtype:
// f64 for f64 logits, else f32); the mean is taken here, on the device. Targets on the
// host are checked there; targets on the logits' device are checked on the device and an
// out-of-range class is reported (naming the row) at the next synchronization, while the
// kernels give such rows NaN without reading outside them. The backward kernel rebuilds
// softmax from lse.
#include <petal/autocast.h>
#include <petal/autograd.h>
#include <petal/ops.h>

#include "core/src/deferred_checks.h"
#include "core/src/internal.h"

namespace petal {

Tensor cross_entropy(const Tensor& logits_arg, const Tensor& target_in, double label_smoothing, int64_t ignore_index) {
  const char* op = "cross_entropy";
  const std::vector<Tensor> cast = autocast_inputs(op, {logits_arg});  // compute dtype (autocast.h)
  const Tensor& logits_in = cast[0];
  detail::check_defined(op, logits_in);
  detail::check_defined(op, target_in);
  detail::check_floating(op, logits_in);
  PETAL_CHECK(logits_in.dim() == 2, "cross_entropy: logits must be [N, C], got ", shape_str(logits_in.shape()));
  const int64_t N = logits_in.size(0), C = logits_in.size(1);
  PETAL_CHECK(target_in.dim() == 1 && target_in.size(0) == N, "cross_entropy: target must be [N] = [", N,
              "] for logits ", shape_str(logits_in.shape()), ", got ", shape_str(target_in.shape()));
  PETAL_CHECK(target_in.dtype() == DType::i64, "cross_entropy: target must be int64 class indices, got ",
              dtype_name(target_in.dtype()));
  PETAL_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
              "cross_entropy: label_smoothing must be in [0, 1], got ", label_smoothing);
  PETAL_CHECK(N == 0 || C > 0, "cross_entropy: logits ", shape_str(logits_in.shape()), " have no classes");

  const Tensor logits = logits_in.contiguous();
  const DType stats = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const TensorOptions stats_opts(stats, logits.device());
  // The number of rows that count, and the check of the targets: on the host when the
  // targets are there (no device round trip), else on the device, reported at the next
  // synchronization (deferred_checks.h) so that a step does not wait for the GPU here.
  Tensor target, count;
  if (target_in.device().is_cpu() || target_in.device() != logits.device()) {
    const Tensor target_host = target_in.detach().to(kCPU).contiguous();
    int64_t counted = 0;
    const int64_t* t = target_host.data<int64_t>();
    for (int64_t r = 0; r < N; ++r) {
      if (t[r] == ignore_index) continue;
      PETAL_CHECK(t[r] >= 0 && t[r] < C, "cross_entropy: target[", r, "] = ", t[r], " is out of range for ", C,
                  " classes (logits ", shape_str(logits_in.shape()), ", ignore_index ", ignore_index, ")");
      ++counted;
    }
    target = target_host.device() == logits.device() ? target_host : target_host.to(logits.device());
    count = full({}, static_cast<double>(counted), stats_opts);
  } else {
    target = target_in.detach().contiguous();
    const Tensor counted = ne(target, static_cast<double>(ignore_index)).to(DType::i64);
    count = sum(counted).to(stats);
    // Out of range: clamping to [0, C) changes the value. The kernels give such rows NaN.
    const Tensor bad = mul(ne(clamp(target, 0.0, static_cast<double>(C - 1)), target).to(DType::i64), counted);
    const Shape shape = logits_in.shape();
    detail::defer_device_check(sum(bad), [target, C, ignore_index, shape] {
      const std::vector<int64_t> t = target.to(kCPU).tolist<int64_t>();
      for (size_t r = 0; r < t.size(); ++r)
        if (t[r] != ignore_index && (t[r] < 0 || t[r] >= C))
          return detail::str_cat("cross_entropy: target[", r, "] = ", t[r], " is out of range for ", C,
                                 " classes (logits ", shape_str(shape), ", ignore_index ", ignore_index,
                                 "; found on the device, reported at the next synchronization)");
      return std::string("cross_entropy: a target was out of range");
    });
  }

  Tensor row_loss = empty({N}, stats_opts), lse = empty({N}, stats_opts);
  if (N > 0)
    detail::backend_of(logits).cross_entropy_forward(row_loss.data_ptr(), lse.data_ptr(), logits.data_ptr(),
                                                     target.data<int64_t>(), logits.dtype(), N, C, label_smoothing,
                                                     ignore_index);
  // Mean over the rows that count (0 / 0 = NaN when every row is ignored, as torch).
  Tensor out = div(sum(row_loss), count).to(logits.dtype());

  autograd::record(op, out, {logits_in}, [logits, target, lse, N, C, count, stats, label_smoothing,
                                          ignore_index](const Tensor& g) {
    // Every counted row gets d(mean)/d(loss[r]) = g / count; no host round trip for g.
    Tensor grad_loss = div(g.to(stats).reshape({1}).expand({N}), count).contiguous();
    Tensor grad = empty({N, C}, TensorOptions(logits.dtype(), logits.device()));
    if (N > 0)
      detail::backend_of(logits).cross_entropy_backward(grad.data_ptr(), grad_loss.data_ptr(), logits.data_ptr(),
                                                        lse.data_ptr(), target.data<int64_t>(), logits.dtype(), N, C,
                                                        label_smoothing, ignore_index);
    return std::vector<Tensor>{grad};
  });
  return out;
}

}  // namespace petal
