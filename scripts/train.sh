#!/usr/bin/env bash
# The README's main-job command: installs dependencies, builds the vit_flowers program
# (release build in build/release, shared with scripts/test.sh), trains the Vision
# Transformer, then classifies one image with the best checkpoint.
#
#   bash scripts/train.sh [DATA_DIR] [extra `vit_flowers train` options...]
#
# With DATA_DIR (a flower_photos folder: DATA_DIR/<class>/*.jpg) it follows the seed's
# recipe (ViT-B/16 at 224 px, SGD, 10 epochs). Without it, petal generates synthetic flower
# photos and trains a small ViT on them: a few minutes on a 2-core CPU.
# Environment: PETAL_DEVICE (auto|cpu|sim|cuda, default auto: cuda when a GPU is usable),
# PETAL_OUT (output folder, default runs/vit_flowers), PETAL_BUILD_DIR (default
# build/release), JOBS (build parallelism).
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir=""
if (($#)) && [[ "$1" != --* ]]; then
  data_dir="$1"
  shift
fi
if [[ -n "$data_dir" && ! -d "$data_dir" ]]; then
  echo "train.sh: dataset folder '$data_dir' does not exist" >&2
  exit 2
fi
out="${PETAL_OUT:-runs/vit_flowers}"
device="${PETAL_DEVICE:-auto}"
jobs="${JOBS:-$(nproc)}"
build="${PETAL_BUILD_DIR:-build/release}"

bash scripts/install-deps.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
export PATH="$PATH:/usr/local/cuda/bin"

echo "== build ($build, target vit_flowers)"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build "$build" -j "$jobs" --target vit_flowers
bin="$build/examples/vit_flowers/vit_flowers"

echo "== train"
args=(train --out "$out" --device "$device")
[[ -n "$data_dir" ]] && args+=(--data "$data_dir")
start=$(date +%s)
"$bin" "${args[@]}" "$@"
echo "training took $(($(date +%s) - start)) s"

echo "== predict"
if [[ -n "$data_dir" ]]; then
  image=$(find "$data_dir" -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) | sort | head -n 1)
else
  # A flower the model has never seen: a fresh synthetic image from another seed (predict
  # resizes and centre-crops it to the model's input size, as validation does).
  "$bin" synth --out "$out/unseen" --per-class 1 --size 64 --seed 2024 >/dev/null
  image="$out/unseen/tulips/tulips_00000.jpg"
fi
"$bin" predict --weights "$out/model-best.safetensors" --image "$image" --class-indices "$out/class_indices.json" \
  --device "$device"
