// Checks whose data lives on a device, reported at the next synchronization with the host
// instead of forcing one: an op records a 0-dim int64 device tensor that is nonzero when the
// check failed and a function that builds the error message (it may read other tensors,
// since the device is synchronized by then). Tensor::copy_ runs the pending checks of the
// calling thread after every device-to-host copy (item(), to(kCPU), tolist(), ...), and
// throws the first failure. Pending checks are per host thread: the thread that issued the
// op is the one whose next synchronization reports it.
#pragma once
#include <functional>
#include <string>

#include <petal/tensor.h>

namespace petal::detail {

/// Records a deferred check: fails when flag (0-dim int64, any device) is nonzero.
void defer_device_check(const Tensor& flag, std::function<std::string()> message);
/// Runs the calling thread's pending checks now (copying their flags to the host) and
/// throws petal::Error with the first failure's message.
void run_deferred_checks();
/// Whether the calling thread has pending checks (cheap; no synchronization).
bool has_deferred_checks();

}  // namespace petal::detail
