// Mixed-precision benchmarks: one ViT training step (forward, cross-entropy, backward,
// AdamW step) in f32 against the same step with forward and loss under bf16 autocast,
// reported as images/s; and the AdamW / SGD update of a whole ViT's parameter list with
// the multi-tensor kernels against one fused launch per parameter (bytes: AdamW reads p,
// g, m, v and writes p, m, v; SGD with momentum reads p, g, buf and writes p, buf).
// Model: ViT-Tiny width 192, depth 12, heads 3 at 64 px with patch 8 (S = 65), batch 16.
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include "bench_common.h"

#include <memory>

using namespace petal;
using petal::bench::skip_without_device;
using petal::bench::sync;

namespace {

nn::ViTConfig bench_vit_config() {
  nn::ViTConfig c = nn::ViTConfig::vit_tiny_patch16_224(5);
  c.img_size = 64;
  c.patch_size = 8;
  return c;
}

void BM_vit_train_step(benchmark::State& state, const char* dev, bool amp) {
  petal::bench::vit_train_step(state, bench_vit_config(), dev, amp);
}

// The ViT's parameters with random gradients.
std::vector<Tensor> vit_parameters_with_grads(Device device) {
  manual_seed(0);
  nn::ViT model(bench_vit_config());
  model.to(device);
  std::vector<Tensor> params = model.parameters();
  for (auto& p : params) p.set_grad(randn(p.shape(), TensorOptions(p.dtype(), device)));
  return params;
}

int64_t total_elements(const std::vector<Tensor>& params) {
  int64_t n = 0;
  for (const auto& p : params) n += p.numel();
  return n;
}

void BM_vit_adamw_step(benchmark::State& state, const char* dev, bool multi_tensor) {
  if (skip_without_device(state, dev)) return;
  std::vector<Tensor> params = vit_parameters_with_grads(Device(dev));
  optim::AdamWOptions o;
  o.multi_tensor = multi_tensor;
  optim::AdamW opt(params, o);
  for (auto _ : state) {
    opt.step();
    sync(params[0]);
  }
  state.counters["tensors"] = static_cast<double>(params.size());
  state.SetBytesProcessed(state.iterations() * total_elements(params) * 4 * 7);
}

void BM_vit_sgd_step(benchmark::State& state, const char* dev, bool multi_tensor) {
  if (skip_without_device(state, dev)) return;
  std::vector<Tensor> params = vit_parameters_with_grads(Device(dev));
  optim::SGDOptions o;
  o.lr = 1e-2;
  o.momentum = 0.9;
  o.multi_tensor = multi_tensor;
  optim::SGD opt(params, o);
  opt.step();  // the buffers exist from here on
  for (auto _ : state) {
    opt.step();
    sync(params[0]);
  }
  state.counters["tensors"] = static_cast<double>(params.size());
  state.SetBytesProcessed(state.iterations() * total_elements(params) * 4 * 5);
}

}  // namespace

BENCHMARK_CAPTURE(BM_vit_train_step, cpu_f32, "cpu", false)->Arg(16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_train_step, cpu_amp_bf16, "cpu", true)->Arg(16)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_train_step, cuda_f32, "cuda", false)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_train_step, cuda_amp_bf16, "cuda", true)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_adamw_step, cpu_multi_tensor, "cpu", true)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_adamw_step, cpu_per_parameter, "cpu", false)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_sgd_step, cpu_multi_tensor, "cpu", true)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_sgd_step, cpu_per_parameter, "cpu", false)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_adamw_step, cuda_multi_tensor, "cuda", true)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_adamw_step, cuda_per_parameter, "cuda", false)->Unit(benchmark::kMicrosecond)->UseRealTime();
