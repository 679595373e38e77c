// Attention benchmarks at ViT shapes: the fused scaled_dot_product_attention kernel against
// the composed matmul/softmax/matmul path (nn::functional::scaled_dot_product_attention) in
// the same run, forward and forward+backward, f32 and bf16. Arguments {D, S, B}: width D with
// D / 64 heads of 64 dims, sequence S, batch B: ViT-B-like {192|384|768, 197, 8} and the
// bench_amp ViT-Tiny step's attention {192, 65, 16} (3 heads). FLOPs are 4 B H S^2 Dh for
// the forward (two GEMMs) and 3.5x that for forward+backward (the fused backward recomputes
// q k^T and runs 4 more GEMMs of that size); bytes are the q/k/v/out traffic in the dtype.
#include <benchmark/benchmark.h>
#include <petal/nn/functional.h>
#include <petal/petal.h>

#include "bench_common.h"

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

struct Shape4 {
  int64_t B, H, S, Dh;
};

Shape4 shape_of(benchmark::State& state) { return {state.range(2), state.range(0) / 64, state.range(1), 64}; }

void BM_attention_forward(benchmark::State& state, const char* dev, bool fused, DType dt) {
  if (skip_without_device(state, dev)) return;
  NoGradGuard ng;
  const Shape4 s = shape_of(state);
  const TensorOptions o(DType::f32, Device(dev));
  Tensor q = randn({s.B, s.H, s.S, s.Dh}, o).to(dt), k = randn({s.B, s.H, s.S, s.Dh}, o).to(dt),
         v = randn({s.B, s.H, s.S, s.Dh}, o).to(dt);
  for (auto _ : state) {
    Tensor out = fused ? scaled_dot_product_attention(q, k, v) : nn::functional::scaled_dot_product_attention(q, k, v);
    sync(out);
    benchmark::DoNotOptimize(out.data_ptr());
  }
  const double flops = 4.0 * s.B * s.H * s.S * s.S * s.Dh;
  state.SetBytesProcessed(state.iterations() * s.B * s.H * s.S * s.Dh * 4 * dtype_size(dt));
  state.counters["FLOPs"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_attention_forward_backward(benchmark::State& state, const char* dev, bool fused, DType dt) {
  if (skip_without_device(state, dev)) return;
  const Shape4 s = shape_of(state);
  const TensorOptions o(DType::f32, Device(dev));
  Tensor q = randn({s.B, s.H, s.S, s.Dh}, o).to(dt).requires_grad_(),
         k = randn({s.B, s.H, s.S, s.Dh}, o).to(dt).requires_grad_(),
         v = randn({s.B, s.H, s.S, s.Dh}, o).to(dt).requires_grad_();
  Tensor w = randn({s.B, s.H, s.S, s.Dh}, o).to(dt);
  for (auto _ : state) {
    Tensor out = fused ? scaled_dot_product_attention(q, k, v) : nn::functional::scaled_dot_product_attention(q, k, v);
    out.backward(w);
    sync(q.grad());
    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
  }
  const double flops = 14.0 * s.B * s.H * s.S * s.S * s.Dh;
  state.SetBytesProcessed(state.iterations() * s.B * s.H * s.S * s.Dh * 9 * dtype_size(dt));
  state.counters["FLOPs"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

#define PETAL_ATTN_VIT_ARGS ->Args({192, 197, 8})->Args({384, 197, 8})->Args({768, 197, 8})->Args({192, 65, 16})
BENCHMARK_CAPTURE(BM_attention_forward, cpu_fused, "cpu", true, DType::f32) PETAL_ATTN_VIT_ARGS->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward, cpu_fused_bf16, "cpu", true, DType::bf16) PETAL_ATTN_VIT_ARGS->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward, cpu_composed, "cpu", false, DType::f32) PETAL_ATTN_VIT_ARGS->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward, cuda_fused, "cuda", true, DType::f32) PETAL_ATTN_VIT_ARGS->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_forward, cuda_composed, "cuda", false, DType::f32) PETAL_ATTN_VIT_ARGS->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_forward_backward, cpu_fused, "cpu", true, DType::f32)->Args({384, 197, 8})->Args({192, 65, 16})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward_backward, cpu_fused_bf16, "cpu", true, DType::bf16)->Args({384, 197, 8})->Args({192, 65, 16})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward_backward, cpu_composed, "cpu", false, DType::f32)->Args({384, 197, 8})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward_backward, cuda_fused, "cuda", true, DType::f32)->Args({384, 197, 8})->Args({768, 197, 8})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_forward_backward, cuda_composed, "cuda", false, DType::f32)->Args({384, 197, 8})->Args({768, 197, 8})->Unit(benchmark::kMicrosecond)->UseRealTime();
