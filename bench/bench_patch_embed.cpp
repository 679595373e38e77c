// Patch embedding benchmarks at ViT shapes: x [B, 3, 224, 224] with P = 16 (196 tokens),
// D in {192, 384, 768}: the fused op (unfold kernel + GEMM with the bias in its epilogue)
// forward, and forward + backward (dW and dbias by GEMM/sum, dx by the fold kernel).
// FLOPs (2 M K D per GEMM) and bytes moved are reported. CPU always; CUDA cases report
// an error without a GPU.
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include "bench_common.h"

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

constexpr int64_t kChannels = 3, kImage = 224, kPatch = 16;

void BM_patch_embed_forward(benchmark::State& state, const char* dev) {
  if (skip_without_device(state, dev)) return;
  const int64_t B = state.range(0), D = state.range(1);
  const TensorOptions opts(DType::f32, Device(dev));
  Tensor x = randn({B, kChannels, kImage, kImage}, opts);
  Tensor w = randn({D, kChannels, kPatch, kPatch}, opts), b = randn({D}, opts);
  NoGradGuard no_grad;
  for (auto _ : state) {
    Tensor y = patch_embed(x, w, b);
    sync(y);
  }
  const int64_t M = B * (kImage / kPatch) * (kImage / kPatch), K = kChannels * kPatch * kPatch;
  // x read, patches written and read, weight read, output written.
  state.SetBytesProcessed(state.iterations() * 4 * (3 * M * K + D * K + M * D));
  state.counters["FLOPs"] =
      benchmark::Counter(2.0 * static_cast<double>(M * K * D), benchmark::Counter::kIsIterationInvariantRate);
}

void BM_patch_embed_forward_backward(benchmark::State& state, const char* dev) {
  if (skip_without_device(state, dev)) return;
  const int64_t B = state.range(0), D = state.range(1);
  const TensorOptions opts(DType::f32, Device(dev));
  Tensor x = randn({B, kChannels, kImage, kImage}, opts).requires_grad_();
  Tensor w = randn({D, kChannels, kPatch, kPatch}, opts).requires_grad_(), b = randn({D}, opts).requires_grad_();
  const int64_t M = B * (kImage / kPatch) * (kImage / kPatch), K = kChannels * kPatch * kPatch;
  Tensor dy = randn({B, M / B, D}, opts);
  for (auto _ : state) {
    patch_embed(x, w, b).backward(dy);
    sync(x.grad());
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
  }
  state.SetBytesProcessed(state.iterations() * 4 * (8 * M * K + 3 * D * K + 4 * M * D));
  state.counters["FLOPs"] =
      benchmark::Counter(6.0 * static_cast<double>(M * K * D), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_patch_embed_forward, cpu, "cpu")->Args({8, 192})->Args({8, 384})->Args({8, 768})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_patch_embed_forward, cuda, "cuda")
    ->Args({8, 192})->Args({8, 768})->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_patch_embed_forward_backward, cpu, "cpu")->Args({8, 192})->Args({8, 768})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_patch_embed_forward_backward, cuda, "cuda")
    ->Args({8, 768})->Args({64, 768})->Unit(benchmark::kMicrosecond)->UseRealTime();
