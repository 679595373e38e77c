#!/usr/bin/env bash
# CMAKE_CUDA_COMPILER_LAUNCHER for petal's CUDA sources: runs the compile command it is given
# (possibly `ccache nvcc ...`, which replays ptxas's output on a cache hit) and keeps what the
# compiler printed (ptxas -v: registers, stack, spill bytes per kernel) next to the object as
# <object>.ptxas.txt, for the ctest cuda:no_register_spills (tests/check_ptxas.cmake).
set -uo pipefail
out=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ ${args[i]} == -o ]] && out=${args[i + 1]}
done
log=$(mktemp)
"$@" 2>"$log"
rc=$?
cat "$log" >&2
if [[ -n $out && $rc -eq 0 ]]; then
  cp "$log" "$out.ptxas.txt.tmp" && mv "$out.ptxas.txt.tmp" "$out.ptxas.txt"
fi
rm -f "$log"
exit $rc
