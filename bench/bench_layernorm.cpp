// LayerNorm benchmarks at ViT shapes (rows = B * 197 tokens, D in {192, 384, 768}):
// the fused forward alone, and forward + backward (dx, dweight, dbias). Bytes moved are
// reported (GB/s) with a FLOPs counter. CPU always; CUDA cases report an error without a GPU.
// Autocast (bf16): forward + backward of the mixed kernel (f32 x and parameters, bf16 y and dy)
// against what it replaced, the f32 LayerNorm with the cast of y to bf16 after it and of dy back
// to f32 before its backward (rows = tokens: 1040 = ViT-Ti/8 at 64 px, batch 16).
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include "bench_common.h"

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

void BM_layer_norm_forward(benchmark::State& state, const char* dev) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  const TensorOptions opts(DType::f32, Device(dev));
  Tensor x = randn({rows, d}, opts), w = randn({d}, opts), b = randn({d}, opts);
  NoGradGuard no_grad;
  sync(layer_norm(x, w, b));  // warm-up
  for (auto _ : state) {
    Tensor y = layer_norm(x, w, b);
    sync(y);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * rows * d * 4 * 2);  // read x, write y
  state.counters["FLOPs"] =
      benchmark::Counter(static_cast<double>(rows * d) * 7, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_layer_norm_forward_backward(benchmark::State& state, const char* dev) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  const TensorOptions opts(DType::f32, Device(dev));
  Tensor x = randn({rows, d}, opts).requires_grad_(), w = randn({d}, opts).requires_grad_();
  Tensor b = randn({d}, opts).requires_grad_(), dy = randn({rows, d}, opts);
  for (auto _ : state) {
    layer_norm(x, w, b).backward(dy);
    sync(x.grad());
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  }
  // Forward reads x, writes y; backward reads dy and x, writes dx.
  state.SetBytesProcessed(state.iterations() * rows * d * 4 * 5);
  state.counters["FLOPs"] =
      benchmark::Counter(static_cast<double>(rows * d) * 20, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_layer_norm_autocast(benchmark::State& state, const char* dev, bool mixed) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0), d = state.range(1);
  const Device device(dev);
  const TensorOptions opts(DType::f32, device);
  Tensor x = randn({rows, d}, opts).requires_grad_(), w = randn({d}, opts).requires_grad_();
  Tensor b = randn({d}, opts).requires_grad_(), dy = randn({rows, d}, opts).to(DType::bf16);
  for (auto _ : state) {
    Tensor y;
    if (mixed) {
      autocast ac(device, DType::bf16);
      y = layer_norm(x, w, b);  // bf16 out
    } else {
      y = layer_norm(x, w, b).to(DType::bf16);  // f32 out, cast for the bf16 Linear
    }
    y.backward(dy);
    sync(x.grad());
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  }
  // The mixed kernel's traffic: x f32 read twice, y bf16 written, dy bf16 read, dx f32 written.
  state.SetBytesProcessed(state.iterations() * rows * d * (4 + 2 + 2 + 4 + 4));
}

}  // namespace

BENCHMARK_CAPTURE(BM_layer_norm_autocast, cpu_mixed, "cpu", true)
    ->Args({1040, 192})->Args({8 * 197, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_layer_norm_autocast, cpu_f32_and_casts, "cpu", false)
    ->Args({1040, 192})->Args({8 * 197, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_layer_norm_forward, cpu, "cpu")->Args({8, 192})->Args({8, 384})->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_layer_norm_forward, cuda, "cuda")
    ->Args({8, 192})->Args({8, 384})->Args({8, 768})->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_layer_norm_forward_backward, cpu, "cpu")->Args({8, 192})->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_layer_norm_forward_backward, cuda, "cuda")
    ->Args({8, 768})->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
