// Helpers shared by the benchmarks: waiting for a device's queued work before the
// timer stops, skipping CUDA cases on machines without a GPU, and the ViT training step
// (bench_amp.cpp, bench_vit_presets.cpp).
#pragma once
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include <memory>
#include <string>

namespace petal::bench {

/// Blocks until the work that produced t is done (a scalar read synchronizes the device).
inline void sync(const Tensor& t) {
  if (!t.device().is_cpu()) (void)t.reshape({-1}).select(0, 0).item();
}

/// Marks the case skipped (and returns true) when dev is not "cpu" and no GPU is usable.
inline bool skip_without_device(benchmark::State& state, const char* dev) {
  if (std::string(dev) != "cpu" && !cuda::is_available()) {
    state.SkipWithError("no GPU");
    return true;
  }
  return false;
}

/// One ViT training step per iteration (forward and cross-entropy, under bf16 autocast when amp,
/// then zero_grad, backward and an AdamW step), after one untimed warm-up step (first-touch
/// allocations, GEMM plans, optimizer state). Reports img/s, and FLOPs/s when
/// flops_per_image > 0. The batch is state.range(0).
inline void vit_train_step(benchmark::State& state, const nn::ViTConfig& config, const char* dev, bool amp,
                           double flops_per_image = 0.0) {
  if (skip_without_device(state, dev)) return;
  const Device device(dev);
  const int64_t batch = state.range(0);
  manual_seed(0);
  auto model = std::make_shared<nn::ViT>(config);
  model->to(device);
  model->train();
  optim::AdamW opt(model->parameters(), optim::AdamWOptions{});
  const nn::CrossEntropyLoss criterion;
  Tensor images = randn({batch, 3, config.img_size, config.img_size}, TensorOptions(DType::f32, device));
  Tensor labels = randint(0, config.num_classes, {batch}).to(device);
  auto step = [&] {
    Tensor loss;
    {
      autocast mixed(device, DType::bf16, amp);
      loss = criterion(model->forward(images), labels);
    }
    opt.zero_grad();
    loss.backward();
    opt.step();
    sync(model->parameters()[0]);
  };
  step();
  for (auto _ : state) step();
  state.counters["img/s"] = benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
  if (flops_per_image > 0)
    state.counters["FLOPs"] =
        benchmark::Counter(flops_per_image * static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace petal::bench
