// Optimizer update benchmarks: the fused adamw_step_ / sgd_step_ kernels against the same
// update composed from core ops (what optim::AdamW / SGD ran before the fused kernel), on
// ViT-sized parameters (an MLP weight [4D, D], D in {192, 384, 768}). Bytes count the
// fused kernel's traffic (AdamW: read p, g, m, v and write p, m, v; SGD with momentum:
// read p, g, buf and write p, buf) so results read as GB/s against the memory bandwidth.
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include "bench_common.h"

#include <cmath>

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

// The AdamW update written with core ops (the composed baseline).
void adamw_composed(Tensor& p, const Tensor& g, Tensor& m, Tensor& v, double lr, double b1, double b2, double eps,
                    double wd, int64_t t) {
  p.mul_(1.0 - lr * wd);
  m.mul_(b1).add_(g, 1.0 - b1);
  v.mul_(b2).add_(mul(g, g), 1.0 - b2);
  const double bc1 = 1.0 - std::pow(b1, double(t)), bc2_sqrt = std::sqrt(1.0 - std::pow(b2, double(t)));
  p.add_(div(m, add(div(sqrt(v), bc2_sqrt), eps)), -lr / bc1);
}

void BM_adamw(benchmark::State& state, const char* dev, bool fused) {
  if (skip_without_device(state, dev)) return;
  NoGradGuard ng;
  const int64_t d = state.range(0), n = 4 * d * d;
  const TensorOptions o(DType::f32, Device(dev));
  Tensor p = randn({4 * d, d}, o), g = randn({4 * d, d}, o), m = zeros({4 * d, d}, o), v = zeros({4 * d, d}, o);
  Tensor none;
  int64_t t = 0;
  for (auto _ : state) {
    ++t;
    if (fused)
      adamw_step_(p, g, m, v, none, 1e-3, 0.9, 0.999, 1e-8, 0.05, t, false);
    else
      adamw_composed(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.05, t);
    sync(p);
  }
  state.SetBytesProcessed(state.iterations() * n * 4 * 7);
  state.counters["FLOPs"] = benchmark::Counter(static_cast<double>(n) * 16, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_sgd_momentum(benchmark::State& state, const char* dev, bool fused) {
  if (skip_without_device(state, dev)) return;
  NoGradGuard ng;
  const int64_t d = state.range(0), n = 4 * d * d;
  const TensorOptions o(DType::f32, Device(dev));
  Tensor p = randn({4 * d, d}, o), g = randn({4 * d, d}, o), buf = zeros({4 * d, d}, o);
  for (auto _ : state) {
    if (fused) {
      sgd_step_(p, g, buf, 1e-2, 0.9, 0.0, 1e-4, false, false);
    } else {
      Tensor dd = add(g, p, 1e-4);
      buf.mul_(0.9).add_(dd, 1.0);
      p.add_(buf, -1e-2);
    }
    sync(p);
  }
  state.SetBytesProcessed(state.iterations() * n * 4 * 5);
  state.counters["FLOPs"] = benchmark::Counter(static_cast<double>(n) * 6, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_adamw, cpu_fused, "cpu", true)->Arg(192)->Arg(384)->Arg(768)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_adamw, cpu_composed, "cpu", false)->Arg(192)->Arg(384)->Arg(768)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_adamw, cuda_fused, "cuda", true)->Arg(768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_adamw, cuda_composed, "cuda", false)->Arg(768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_sgd_momentum, cpu_fused, "cpu", true)->Arg(192)->Arg(768)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_sgd_momentum, cpu_composed, "cpu", false)->Arg(192)->Arg(768)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_sgd_momentum, cuda_fused, "cuda", true)->Arg(768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_sgd_momentum, cuda_composed, "cuda", false)->Arg(768)->Unit(benchmark::kMicrosecond)->UseRealTime();
