// Deferred device checks (deferred_checks.h): a per-thread list of (flag, message) pairs.
#include "core/src/deferred_checks.h"

#include <utility>
#include <vector>

#include <petal/error.h>

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
    for (const Pending& p : pending) {
      if (p.flag.item() != 0.0) {
        failure = p.message();
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
