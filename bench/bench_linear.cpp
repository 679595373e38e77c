// Fused Linear (+ GELU) against the composed ops it replaced, at a ViT MLP's fc1 shape:
// x [B * 197, D] times W [4D, D]^T plus bias, then the erf GELU, forward + backward.
// fused: fused_linear (cpu: GEMM + one bias/GELU pass; cuda: the BIAS epilogue + the GELU
// kernel, the bias gradient in the dW GEMM's BGRADB epilogue); composed: matmul, add, gelu
// (bias add and GELU as elementwise kernels, the bias gradient as a column sum). FLOPs of the
// three GEMMs (6 M N K) are reported. CPU always; CUDA cases report an error without a GPU.
// BM_linear_epilogue_*: the CPU epilogue passes alone at the same [M, 4D] (bytes counted):
// forward with k = 0 (the GEMM is a memset of aux, then bias + GELU: memset, read and write
// aux, write y), backward with only the bias gradient wanted (the one pass that reads dy and
// aux, writes dpre and sums the bias gradient). PETAL_CPU_ISA=baseline selects the baseline
// variants of the row kernels (kernels/cpu/isa.h).
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include "bench_common.h"

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

void BM_linear_gelu_forward_backward(benchmark::State& state, const char* dev, bool fused, DType dtype) {
  if (skip_without_device(state, dev)) return;
  const int64_t B = state.range(0), D = state.range(1), M = B * 197, N = 4 * D;
  const TensorOptions opts(dtype, Device(dev));
  Tensor x = randn({M, D}, opts).requires_grad_();
  Tensor w = mul(randn({N, D}, opts), 0.05).detach().requires_grad_(), b = randn({N}, opts).requires_grad_();
  Tensor dy = randn({M, N}, opts);
  for (auto _ : state) {
    Tensor y = fused ? fused_linear(x, w, b, "gelu") : gelu(add(matmul(x, w.t()), b));
    y.backward(dy);
    sync(x.grad());
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  }
  state.counters["FLOPs"] = benchmark::Counter(6.0 * static_cast<double>(M) * static_cast<double>(N) * D,
                                               benchmark::Counter::kIsIterationInvariantRate);
}

void BM_linear_epilogue_forward(benchmark::State& state, DType dtype, const char* act) {
  const int64_t M = state.range(0) * 197, N = 4 * state.range(1);
  const TensorOptions opts(dtype, Device("cpu"));
  Tensor x = zeros({M, 0}, opts), w = zeros({N, 0}, opts), b = randn({N}, opts);
  for (auto _ : state) {
    Tensor y = fused_linear(x, w, b, act);
    benchmark::DoNotOptimize(y.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * M * N * static_cast<int64_t>(dtype_size(dtype)) * 4);
}

void BM_linear_epilogue_backward(benchmark::State& state, DType dtype, const char* act) {
  const int64_t M = state.range(0) * 197, N = 4 * state.range(1);
  const TensorOptions opts(dtype, Device("cpu"));
  // x [M, 0] and a frozen weight: the backward is the dGELU + bias-gradient pass alone.
  Tensor x = zeros({M, 0}, opts), w = zeros({N, 0}, opts), b = randn({N}, opts).requires_grad_();
  Tensor y = fused_linear(x, w, b, act);
  Tensor dy = randn({M, N}, opts);
  for (auto _ : state) {
    y.backward(dy, /*retain_graph=*/true);
    benchmark::DoNotOptimize(b.grad().data_ptr());
    b.zero_grad();
  }
  state.SetBytesProcessed(state.iterations() * M * N * static_cast<int64_t>(dtype_size(dtype)) * 3);
}

}  // namespace

BENCHMARK_CAPTURE(BM_linear_gelu_forward_backward, cpu_fused, "cpu", true, DType::f32)->Args({4, 384})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_linear_gelu_forward_backward, cpu_composed, "cpu", false, DType::f32)->Args({4, 384})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_linear_gelu_forward_backward, cpu_fused_bf16, "cpu", true, DType::bf16)->Args({4, 384})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_linear_epilogue_forward, cpu_f32_gelu, DType::f32, "gelu")->Args({4, 384})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_linear_epilogue_forward, cpu_bf16_gelu, DType::bf16, "gelu")->Args({4, 384})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_linear_epilogue_forward, cpu_bf16_gelu_tanh, DType::bf16, "gelu_tanh")->Args({4, 384})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_linear_epilogue_backward, cpu_f32_gelu, DType::f32, "gelu")->Args({4, 384})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_linear_epilogue_backward, cpu_bf16_gelu, DType::bf16, "gelu")->Args({4, 384})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_linear_epilogue_backward, cpu_bf16_gelu_tanh, DType::bf16, "gelu_tanh")->Args({4, 384})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_linear_epilogue_backward, cpu_bf16_none, DType::bf16, "none")->Args({4, 384})->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_linear_gelu_forward_backward, cuda_fused_f32, "cuda", true, DType::f32)->Args({64, 768})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_linear_gelu_forward_backward, cuda_composed_f32, "cuda", false, DType::f32)->Args({64, 768})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_linear_gelu_forward_backward, cuda_fused_bf16, "cuda", true, DType::bf16)->Args({64, 768})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_linear_gelu_forward_backward, cuda_composed_bf16, "cuda", false, DType::bf16)->Args({64, 768})->Unit(benchmark::kMillisecond)->UseRealTime();
