// Attention benchmarks at ViT shapes (B=8, S=197, D in {192, 384, 768} with 3/6/12 heads
// of 64 dims): the fused scaled_dot_product_attention kernel against the composed
// matmul/softmax/matmul path (nn::functional::scaled_dot_product_attention) in the same
// run, forward and forward+backward. FLOPs are 4 B H S^2 Dh for the forward (two GEMMs)
// and 2.5x that for forward+backward (the fused backward recomputes q k^T: 5 more GEMMs
// of that size are counted as 10 B H S^2 Dh); bytes are the q/k/v/out traffic.
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

Shape4 shape_of(benchmark::State& state) { return {8, state.range(0) / 64, 197, 64}; }

void BM_attention_forward(benchmark::State& state, const char* dev, bool fused) {
  if (std::string(dev) != "cpu" && !cuda::is_available()) {
    state.SkipWithError("no GPU");
    return;
  }
  NoGradGuard ng;
  const Shape4 s = shape_of(state);
  const TensorOptions o(DType::f32, Device(dev));
  Tensor q = randn({s.B, s.H, s.S, s.Dh}, o), k = randn({s.B, s.H, s.S, s.Dh}, o), v = randn({s.B, s.H, s.S, s.Dh}, o);
  for (auto _ : state) {
    Tensor out = fused ? scaled_dot_product_attention(q, k, v) : nn::functional::scaled_dot_product_attention(q, k, v);
    sync(out);
    benchmark::DoNotOptimize(out.data_ptr());
  }
  const double flops = 4.0 * s.B * s.H * s.S * s.S * s.Dh;
  state.SetBytesProcessed(state.iterations() * s.B * s.H * s.S * s.Dh * 4 * 4);
  state.counters["FLOPs"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_attention_forward_backward(benchmark::State& state, const char* dev, bool fused) {
  if (std::string(dev) != "cpu" && !cuda::is_available()) {
    state.SkipWithError("no GPU");
    return;
  }
  const Shape4 s = shape_of(state);
  const TensorOptions o(DType::f32, Device(dev));
  Tensor q = randn({s.B, s.H, s.S, s.Dh}, o).requires_grad_(), k = randn({s.B, s.H, s.S, s.Dh}, o).requires_grad_(),
         v = randn({s.B, s.H, s.S, s.Dh}, o).requires_grad_();
  Tensor w = randn({s.B, s.H, s.S, s.Dh}, o);
  for (auto _ : state) {
    Tensor out = fused ? scaled_dot_product_attention(q, k, v) : nn::functional::scaled_dot_product_attention(q, k, v);
    out.backward(w);
    sync(q.grad());
    q.zero_grad();
    k.zero_grad();
    v.zero_grad();
  }
  const double flops = 14.0 * s.B * s.H * s.S * s.S * s.Dh;
  state.SetBytesProcessed(state.iterations() * s.B * s.H * s.S * s.Dh * 4 * 9);
  state.counters["FLOPs"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_attention_forward, cpu_fused, "cpu", true)->Arg(192)->Arg(384)->Arg(768)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward, cpu_composed, "cpu", false)->Arg(192)->Arg(384)->Arg(768)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward, cuda_fused, "cuda", true)->Arg(192)->Arg(384)->Arg(768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_forward, cuda_composed, "cuda", false)->Arg(192)->Arg(384)->Arg(768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_forward_backward, cpu_fused, "cpu", true)->Arg(384)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward_backward, cpu_composed, "cpu", false)->Arg(384)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_forward_backward, cuda_fused, "cuda", true)->Arg(384)->Arg(768)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_attention_forward_backward, cuda_composed, "cuda", false)->Arg(384)->Arg(768)->Unit(benchmark::kMicrosecond)->UseRealTime();
