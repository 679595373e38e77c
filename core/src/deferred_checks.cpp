// Deferred device checks (deferred_checks.h): a per-thread list of (flag, message) pairs.
#include "core/src/deferred_checks.h"

#include <utility>
#include <vector>

#include <petal/error.h>
#include <petal/ops.h>

namespace petal::detail {
namespace {

struct Pending {
  Tensor flag;
  std::function<std::string()> message;
};

thread_local std::vector<Pending> tls_pending;
thread_local bool tls_running = false;

}  // namespace

void defer_device_check(const Tensor& flag, std::function<std::string()> message) {
  PETAL_CHECK(flag.defined() && flag.numel() == 1, "defer_device_check: the flag must be a one-element tensor");
  tls_pending.push_back(Pending{flag.detach(), std::move(message)});
}

bool has_deferred_checks() { return !tls_pending.empty() && !tls_running; }

void run_deferred_checks() {
  if (tls_running || tls_pending.empty()) return;
  std::vector<Pending> pending;
  pending.swap(tls_pending);
  tls_running = true;  // the flags' own copies to the host come back here
  std::string failure;
  try {
    // One copy to the host for all the flags on a device (stacked there), not one per check:
    // a training loop that reads its metrics every N steps has N checks pending.
    std::vector<double> values(pending.size(), 0.0);
    std::vector<bool> done(pending.size(), false);
    for (size_t i = 0; i < pending.size(); ++i) {
      if (done[i]) continue;
      std::vector<size_t> group;
      std::vector<Tensor> flags;
      for (size_t j = i; j < pending.size(); ++j)
        if (!done[j] && pending[j].flag.device() == pending[i].flag.device()) {
          group.push_back(j);
          flags.push_back(pending[j].flag.reshape({1}).to(DType::f64));
          done[j] = true;
        }
      const std::vector<double> v = (flags.size() == 1 ? flags[0] : cat(flags)).to(kCPU).tolist<double>();
      for (size_t k = 0; k < group.size(); ++k) values[group[k]] = v[k];
    }
    for (size_t i = 0; i < pending.size(); ++i) {
      if (values[i] != 0.0) {
        failure = pending[i].message();  // the first failure, in the order the ops were issued
        break;
      }
    }
  } catch (...) {
    tls_running = false;
    throw;
  }
  tls_running = false;
  if (!failure.empty()) throw Error(failure);
}

}  // namespace petal::detail
