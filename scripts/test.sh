#!/usr/bin/env bash
# The README's test command: installs dependencies, builds petal (CUDA backend too when
# nvcc exists, compiled for sm_80/sm_90 even without a GPU), runs the whole ctest suite
# (GPU tests report skipped without a GPU), then rebuilds the CPU and sim backends with
# ASan+UBSan and runs their tests again, then with ThreadSanitizer for the simulator's race
# detection (sim tests only), and runs the libFuzzer targets for 30 s each (clang). Each of the three runs uses a different schedule seed.  Options: --no-sanitize, --jobs N.
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=1
jobs=$(nproc)
while (($#)); do
  case "$1" in
    --no-sanitize) sanitize=0 ;;
    --jobs) jobs="$2"; shift ;;
    *) echo "test.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
scripts/install-deps.sh
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
export PATH="$PATH:/usr/local/cuda/bin"
# ctest runs test processes in parallel; sleeping (not spinning) OpenMP workers keep
# them from starving each other on a small machine.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

# Test-only dependency: CUTLASS's headers (PyPI wheel nvidia-cutlass) for the check of the PTX
# fragment layouts against CuTe; tests/sim finds them here, and the check reports skipped without.
if ! compgen -G "build/venv-cutlass/lib/python3*/site-packages/cutlass_library/source/include/cute" >/dev/null; then
  { python3 -m venv build/venv-cutlass && build/venv-cutlass/bin/pip install -q --no-deps nvidia-cutlass; } ||
    echo "test.sh: could not install nvidia-cutlass; the CuTe layout check will report skipped" >&2
fi

echo "== release build"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}"
cmake --build build/release -j "$jobs"
echo "== tests (release)"
(cd build/release && ctest --output-on-failure -j "$jobs" --timeout 900)

if ((sanitize)); then
  echo "== ASan+UBSan build (cpu + sim backends)"
  cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPETAL_SANITIZE=ON -DPETAL_CUDA=OFF \
    -DPETAL_BUILD_BENCH=OFF -DPETAL_BUILD_EXAMPLES=OFF "${launcher[@]}"
  cmake --build build/asan -j "$jobs"
  echo "== tests (ASan+UBSan)"
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # A second schedule seed for every sim test (the release run uses the default, 1). Whole
  # training runs on sim (label long_e2e) are too slow under ASan and run in the release stage only.
  (cd build/asan && PETAL_SIM_SEED=2 ctest --output-on-failure -j "$jobs" --timeout 1800 -LE "cuda|install|long_e2e")
fi
if ((sanitize)) && command -v clang++ >/dev/null; then
  # Coverage-guided fuzzing (libFuzzer, clang) of the image decoders and the safetensors reader,
  # seeded from the bad-input corpus; only those parsers are instrumented, so this build is short.
  echo "== fuzz build (libFuzzer + ASan/UBSan on the parsers)"
  cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ -DPETAL_FUZZ=ON \
    -DPETAL_FUZZ_SECONDS="${PETAL_FUZZ_SECONDS:-30}" -DPETAL_SIM=OFF -DPETAL_CUDA=OFF -DPETAL_BUILD_TESTS=OFF \
    -DPETAL_BUILD_BENCH=OFF -DPETAL_BUILD_EXAMPLES=OFF "${launcher[@]}"
  cmake --build build/fuzz -j "$jobs"
  echo "== fuzzers"
  (cd build/fuzz && ctest --output-on-failure -L fuzz)
elif ((sanitize)); then
  echo "test.sh: clang++ not found: the fuzz stage is skipped (scripts/install-deps.sh installs it)" >&2
fi
if ((sanitize)); then
  # Race detection: the simulator's threads as ThreadSanitizer fibers (docs/simulator.md).
  # Every sim test (the simulator's own, the planted races, and every kernels/cuda kernel
  # through the cross-backend suite on sim) must run without a report; a third schedule seed.
  # libgomp is not TSan-instrumented: one OpenMP thread.
  echo "== TSan build (race detection in the simulator)"
  cmake -S . -B build/tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPETAL_SANITIZE=thread -DPETAL_CUDA=OFF \
    -DPETAL_BUILD_BENCH=OFF -DPETAL_BUILD_EXAMPLES=OFF "${launcher[@]}"
  cmake --build build/tsan -j "$jobs"
  echo "== tests (TSan: sim)"
  (cd build/tsan && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PETAL_SIM_SEED=3 \
    TSAN_OPTIONS="halt_on_error=1:exitcode=66:report_signal_unsafe=0" \
    ctest --output-on-failure -j "$jobs" --timeout 1800 -L "^sim$" )
  (cd build/tsan && OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PETAL_SIM_SEED=3 \
    TSAN_OPTIONS="halt_on_error=1:exitcode=66:report_signal_unsafe=0" \
    ./tests/petal_tests "[cross_backend]" )
fi
echo "== all tests passed"
