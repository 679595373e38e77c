// Elementwise kernel benchmarks at ViT activation shapes (B*S x D with S=197): bytes
// moved are reported as a counter so results read as GB/s. CPU always; CUDA when a
// GPU is present (synchronizing after each iteration). f32 and bf16 on the CPU;
// PETAL_CPU_ISA=baseline selects the baseline variants of the row kernels.
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include "bench_common.h"

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

void BM_gelu(benchmark::State& state, const char* dev, DType dtype = DType::f32) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  Tensor x = randn({rows, d}, TensorOptions(dtype, Device(dev)));
  for (auto _ : state) {
    Tensor y = gelu(x);
    sync(y);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * rows * d * es * 2);
  state.counters["FLOPs"] = benchmark::Counter(static_cast<double>(rows * d) * 8, benchmark::Counter::kIsIterationInvariantRate);
}

// d gelu: reads dy and x, writes dx (the autograd node's kernel; graph kept across iterations).
void BM_gelu_backward(benchmark::State& state, DType dtype) {
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  Tensor x = randn({rows, d}, TensorOptions(dtype, Device("cpu"))).requires_grad_();
  Tensor y = gelu(x);
  Tensor dy = randn({rows, d}, TensorOptions(dtype, Device("cpu")));
  for (auto _ : state) {
    y.backward(dy, /*retain_graph=*/true);
    benchmark::DoNotOptimize(x.grad().data_ptr());
    x.zero_grad();
  }
  state.SetBytesProcessed(state.iterations() * rows * d * es * 3);
}

// Unary exp / tanh / sigmoid (f32): kernels/cpu/gelu.h's approximations.
void BM_unary(benchmark::State& state, const char* op) {
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  Tensor x = randn({rows, d}, TensorOptions(DType::f32, Device("cpu")));
  const std::string name(op);
  for (auto _ : state) {
    Tensor y = name == "exp" ? exp(x) : (name == "tanh" ? tanh(x) : sigmoid(x));
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * rows * d * 4 * 2);
}

void BM_add_broadcast(benchmark::State& state, const char* dev, DType dtype = DType::f32) {
  if (skip_without_device(state, dev)) return;
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  Tensor x = randn({rows, d}, TensorOptions(dtype, Device(dev)));
  Tensor b = randn({d}, TensorOptions(dtype, Device(dev)));
  for (auto _ : state) {
    Tensor y = add(x, b);
    sync(y);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * rows * d * es * 2);
}

// Same-shape add (the residual connection): reads two, writes one.
void BM_add(benchmark::State& state, DType dtype) {
  const int64_t rows = state.range(0) * 197, d = state.range(1);
  const int64_t es = static_cast<int64_t>(dtype_size(dtype));
  Tensor x = randn({rows, d}, TensorOptions(dtype, Device("cpu")));
  Tensor r = randn({rows, d}, TensorOptions(dtype, Device("cpu")));
  for (auto _ : state) {
    Tensor y = add(x, r);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * rows * d * es * 3);
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
BENCHMARK_CAPTURE(BM_gelu, cpu_bf16, "cpu", DType::bf16)->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_gelu_backward, cpu_f32, DType::f32)->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_gelu_backward, cpu_bf16, DType::bf16)->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_unary, cpu_exp, "exp")->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_unary, cpu_tanh, "tanh")->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_unary, cpu_sigmoid, "sigmoid")->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_gelu, cuda, "cuda")->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_add_broadcast, cpu, "cpu")->Args({8, 192})->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_add_broadcast, cpu_bf16, "cpu", DType::bf16)->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_add, cpu_f32, DType::f32)->Args({8, 192})->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_add, cpu_bf16, DType::bf16)->Args({8, 192})->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_add_broadcast, cuda, "cuda")->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_transpose_copy, cpu, "cpu")->Args({8, 192})->Args({8, 768})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_transpose_copy, cuda, "cuda")->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
