// End-to-end training step of each ViT preset at its own size (224 px, patch 16, 5 classes,
// the flowers head): forward, cross-entropy, backward and AdamW, f32 and under bf16
// autocast, reported as images/s and FLOPs (the model's forward+backward GEMM and attention
// FLOPs, 3x the forward). On the CPU at batch 8 (tiny, small) and 4 (base); on cuda at 64.
// The small 64-px model of bench_amp.cpp is the one scripts/train.sh trains; these are the
// models a user fine-tunes (`vit_flowers train --model vit_base --weights ...`).
#include <benchmark/benchmark.h>
#include <petal/petal.h>

#include "bench_common.h"

using namespace petal;

namespace {

// Forward FLOPs of one image: patch embedding, per block qkv/proj/fc1/fc2 GEMMs and the two
// attention GEMMs, the head. Backward is twice the forward.
double forward_flops_per_image(const nn::ViTConfig& c) {
  const double n = static_cast<double>((c.img_size / c.patch_size) * (c.img_size / c.patch_size));
  const double s = n + 1, d = static_cast<double>(c.width), k = 3.0 * c.patch_size * c.patch_size;
  const double mlp = d * c.mlp_ratio;
  const double block = 2 * s * d * 3 * d + 2 * s * d * d + 2 * 2 * s * d * mlp + 2 * 2 * s * s * d;
  return 2 * n * k * d + c.depth * block + 2 * d * c.num_classes;
}

void BM_vit_preset_train_step(benchmark::State& state, const char* preset, const char* dev, bool amp) {
  const nn::ViTConfig config = nn::ViTConfig::preset(preset, 5);
  petal::bench::vit_train_step(state, config, dev, amp, 3.0 * forward_flops_per_image(config));
}

}  // namespace

BENCHMARK_CAPTURE(BM_vit_preset_train_step, vit_tiny_cpu_f32, "vit_tiny_patch16_224", "cpu", false)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_preset_train_step, vit_tiny_cpu_amp_bf16, "vit_tiny_patch16_224", "cpu", true)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_preset_train_step, vit_small_cpu_f32, "vit_small_patch16_224", "cpu", false)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_preset_train_step, vit_small_cpu_amp_bf16, "vit_small_patch16_224", "cpu", true)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_preset_train_step, vit_base_cpu_f32, "vit_base_patch16_224", "cpu", false)->Arg(4)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_preset_train_step, vit_base_cpu_amp_bf16, "vit_base_patch16_224", "cpu", true)->Arg(4)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_preset_train_step, vit_base_cuda_f32, "vit_base_patch16_224", "cuda", false)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_vit_preset_train_step, vit_base_cuda_amp_bf16, "vit_base_patch16_224", "cuda", true)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();
