#!/usr/bin/env bash
# Installs petal's build and test dependencies from Debian's packages (run as root).
# The CUDA toolkit is optional: when nvcc is present the CUDA backend is built too.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache pkg-config
  libopenblas-openmp-dev      # CBLAS for CPU GEMM, OpenMP build (shares petal's thread pool)
  catch2                      # tests
  libbenchmark-dev            # bench/
  libstb-dev                  # image decode/encode, stb_truetype (text in vit_flowers pictures)
  fonts-dejavu-core           # DejaVuSans.ttf for that text (found at run time; pictures without text if absent)
  libturbojpeg0-dev           # JPEG decode (libjpeg-turbo's TurboJPEG API)
  nlohmann-json3-dev          # safetensors headers
  libboost-context-dev        # fibers of the SIMT simulator
  libopenmpi-dev openmpi-bin  # petal::distributed's MPI transport and mpirun (distributed tests)
  clang libclang-rt-dev       # libFuzzer targets (tests/fuzz) in scripts/test.sh
  libdnnl-dev                 # oneDNN: bf16 GEMM on AVX512-BF16/AMX CPUs (optional, PETAL_ONEDNN=AUTO)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages ${missing[*]} and not root; run: sudo $0" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "install-deps: all dependencies present"
