// Softmax cross-entropy benchmarks: the ViT flowers head (B x 5), an ImageNet-sized head
// (B x 1000) and per-token classification (B * 197 rows x 1000), forward alone and
// forward + backward, with label smoothing 0.1. Bytes moved are reported (GB/s) with a
// FLOPs counter. CPU always; CUDA cases report an error without a GPU.
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include "bench_common.h"

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

Tensor targets(int64_t rows, int64_t classes, Device dev) {
  std::vector<int64_t> t(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) t[r] = (r * 7919) % classes;
  return tensor(t, {rows}).to(dev);
}

void BM_cross_entropy_forward(benchmark::State& state, const char* dev) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0), classes = state.range(1);
  Tensor x = randn({rows, classes}, TensorOptions(DType::f32, Device(dev)));
  Tensor t = targets(rows, classes, Device(dev));
  NoGradGuard no_grad;
  for (auto _ : state) {
    Tensor loss = cross_entropy(x, t, 0.1);
    sync(loss);
  }
  state.SetBytesProcessed(state.iterations() * rows * (classes * 4 + 8));
  state.counters["FLOPs"] =
      benchmark::Counter(static_cast<double>(rows * classes) * 4, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_cross_entropy_forward_backward(benchmark::State& state, const char* dev) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0), classes = state.range(1);
  Tensor x = randn({rows, classes}, TensorOptions(DType::f32, Device(dev))).requires_grad_();
  Tensor t = targets(rows, classes, Device(dev));
  for (auto _ : state) {
    cross_entropy(x, t, 0.1).backward();
    sync(x.grad());
    x.zero_grad();
  }
  // Forward reads the logits; backward reads them again and writes the gradient.
  state.SetBytesProcessed(state.iterations() * rows * (classes * 4 * 3 + 16));
  state.counters["FLOPs"] =
      benchmark::Counter(static_cast<double>(rows * classes) * 8, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_cross_entropy_forward, cpu, "cpu")
    ->Args({8, 5})->Args({256, 1000})->Args({8 * 197, 1000})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_cross_entropy_forward, cuda, "cuda")
    ->Args({8, 5})->Args({256, 1000})->Args({8 * 197, 1000})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_cross_entropy_forward_backward, cpu, "cpu")
    ->Args({8, 5})->Args({8 * 197, 1000})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_cross_entropy_forward_backward, cuda, "cuda")
    ->Args({8, 5})->Args({8 * 197, 1000})->Unit(benchmark::kMicrosecond)->UseRealTime();
