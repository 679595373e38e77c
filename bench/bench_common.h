// Helpers shared by the benchmarks: waiting for a device's queued work before the
// timer stops, and skipping CUDA cases on machines without a GPU.
#pragma once
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include <string>

namespace petal::bench {

/// Blocks until the work that produced t is done (a scalar read synchronizes the device).
inline void sync(const Tensor& t) {
  if (!t.device().is_cpu()) (void)t.reshape({-1}).select(0, 0).item();
}

/// Marks the case skipped (and returns true) when dev is not "cpu" and no GPU is usable.
inline bool skip_without_device(benchmark::State& state, const char* dev) {
  if (std::string(dev) != "cpu" && !cuda::is_available()) {
    state.SkipWithError("no GPU");
    return true;
  }
  return false;
}

}  // namespace petal::bench
