#!/usr/bin/env bash
# ctest distributed:vit_flowers:np2: `vit_flowers train --distributed` under mpirun on 2
# ranks with a tiny ViT on generated flowers must finish, write one set of outputs (rank 0
# logs each epoch once; checkpoints and class indices exist; no temporaries are left), and
# report the accuracy it reached. Arguments: MPIRUN_COMMAND... -- VIT_FLOWERS OUT_DIR
set -euo pipefail
mpirun=()
while [[ $1 != -- ]]; do mpirun+=("$1"); shift; done
shift
exe=$1 out=$2
rm -rf "$out"
log=$("${mpirun[@]}" -np 2 "$exe" train --distributed --synthetic 12 --img-size 16 --patch-size 4 --width 32 --depth 1 \
  --heads 2 --epochs 2 --batch-size 4 --workers 1 --quiet --out "$out" 2>&1) || { echo "$log"; echo "FAIL: mpirun exited non-zero"; exit 1; }
echo "$log"
fail() { echo "FAIL: $*"; exit 1; }
[[ $(grep -c '^\[epoch 1/2\]' <<<"$log") == 1 ]] || fail "expected one '[epoch 1/2]' line (rank 0 only)"
[[ $(grep -c '^distributed: 2 processes' <<<"$log") == 1 ]] || fail "expected the 'distributed: 2 processes' line once"
for f in checkpoint-last.safetensors model-best.safetensors class_indices.json; do [[ -s $out/$f ]] || fail "missing $out/$f"; done
if compgen -G "$out/*.tmp*" >/dev/null; then fail "temporaries left in $out"; fi
echo "PASS"
