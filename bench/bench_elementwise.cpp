// Elementwise kernel benchmarks at ViT activation shapes (B*S x D with S=197): bytes
// moved are reported as a counter so results read as GB/s. CPU always; CUDA when a
// GPU is present (synchronizing after each iteration).
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include "bench_common.h"

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

void BM_gelu(benchmark::State& state, const char* dev) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  Tensor x = randn({rows, d}, TensorOptions(DType::f32, Device(dev)));
  for (auto _ : state) {
    Tensor y = gelu(x);
    sync(y);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * rows * d * 4 * 2);
  state.counters["FLOPs"] = benchmark::Counter(static_cast<double>(rows * d) * 8, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_add_broadcast(benchmark::State& state, const char* dev) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  Tensor x = randn({rows, d}, TensorOptions(DType::f32, Device(dev)));
  Tensor b = randn({d}, TensorOptions(DType::f32, Device(dev)));
  for (auto _ : state) {
    Tensor y = add(x, b);
    sync(y);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * rows * d * 4 * 2);
}

void BM_transpose_copy(benchmark::State& state, const char* dev) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  Tensor x = randn({rows, d}, TensorOptions(DType::f32, Device(dev)));
  for (auto _ : state) {
    Tensor y = x.t().contiguous();
    sync(y);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * rows * d * 4 * 2);
}

}  // namespace

BENCHMARK_CAPTURE(BM_gelu, cpu, "cpu")->Args({8, 192})->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_gelu, cuda, "cuda")->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_add_broadcast, cpu, "cpu")->Args({8, 192})->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_add_broadcast, cuda, "cuda")->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_transpose_copy, cpu, "cpu")->Args({8, 192})->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_transpose_copy, cuda, "cuda")->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
