#!/usr/bin/env bash
# The VAE-posterior family at equal budget: every posterior kind of train-vae trained with
# the same epochs, warm-up, data and seeds, then one markdown table (medians over seeds).
#
#   cargo build --release -p train-vae --features flex
#   EPOCHS=100 SEEDS="0 1 2" benches/vae_family.sh
#
# Environment: BIN (default target/release/train-vae), EPOCHS (100), WARMUP (10), SEEDS
# ("0 1 2"), S (importance samples of the final IW-NLL, 5000 as in the papers), OUT
# (runs/vae-family), TABLE (docs/train-vae/family.md), KINDS (name=flags pairs, default
# the whole family below; add e.g. "iaf-affine=--flow iaf --iaf-update affine" for an
# ablation), EXTRA (flags for every run). Runs already finished in OUT are kept (delete
# the run directory to redo one), JOBS (runs at once, default 1; each gets
# RAYON_NUM_THREADS=THREADS, default the cores divided by JOBS). Run on an otherwise idle
# machine: images/s is only comparable then, and between runs with the same JOBS.
#
# On 2 cores JOBS=2 (one thread per run) finishes the family sooner than one run at a
# time with two threads: two single-threaded T-SNF runs (K = 16) side by side trained
# ~1,480 images/s each, ~2,960 together, against ~2,300 for one run on both cores (flex,
# 2026-12-07): most of these networks' operations are too small to split over threads.
set -euo pipefail
BIN=${BIN:-target/release/train-vae}
EPOCHS=${EPOCHS:-100}
WARMUP=${WARMUP:-10}
SEEDS=${SEEDS:-"0 1 2"}
S=${S:-5000}
OUT=${OUT:-runs/vae-family}
TABLE=${TABLE:-docs/train-vae/family.md}
EXTRA=${EXTRA:-}
JOBS=${JOBS:-1}
THREADS=${THREADS:-$(( $(nproc) / JOBS > 0 ? $(nproc) / JOBS : 1 ))}
# Slowest first: with JOBS > 1 the long O-SNF runs start at once instead of last, and the
# short ones fill the other slots at the end (the table sorts its rows by IW-NLL).
DEFAULT_KINDS=(
  "sylvester-o=--flow sylvester-o --n-flows 16"
  "sylvester-h=--flow sylvester-h --n-flows 16"
  "sylvester-t=--flow sylvester-t --n-flows 16"
  "iaf=--flow iaf --n-flows 8"
  "planar=--flow planar --n-flows 16"
  "householder=--flow householder --n-flows 16"
  "none=--flow none"
)
if [ -n "${KINDS:-}" ]; then
  IFS=$'\n' read -r -d '' -a kinds <<< "$KINDS" || true
else
  kinds=("${DEFAULT_KINDS[@]}")
fi
mkdir -p "$OUT"
# One run: train, evaluate, mark its kind (the summary reads only marked runs).
run() {
  local name=$1 flags=$2 seed=$3 dir=$4
  echo "$(date -u +%FT%TZ) train-vae: $name ($flags) seed $seed" >&2
  # shellcheck disable=SC2086
  if RAYON_NUM_THREADS=$THREADS "$BIN" $flags --epochs "$EPOCHS" --warmup-epochs "$WARMUP" \
    --patience 0 --iw-samples "$S" --seed "$seed" --out-dir "$dir" $EXTRA \
    > "$OUT/$name-$seed.log" 2>&1; then
    echo "$name" > "$dir/kind"
  else
    echo "FAILED: $name seed $seed (log: $OUT/$name-$seed.log)" >&2
    return 1
  fi
}
failed=0
for pair in "${kinds[@]}"; do
  name=${pair%%=*}; flags=${pair#*=}
  for seed in $SEEDS; do
    dir="$OUT/$name-$seed"
    if [ -f "$dir/summary.json" ]; then
      echo "kept: $dir" >&2
      continue
    fi
    rm -rf "$dir"
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do
      wait -n || failed=1
    done
    run "$name" "$flags" "$seed" "$dir" &
  done
done
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do
  wait -n || failed=1
done
python3 "$(dirname "$0")/vae_family_summary.py" "$OUT" "$TABLE" "epochs $EPOCHS, warm-up $WARMUP, S=$S, seeds $SEEDS"
[ "$failed" -eq 0 ] || { echo "some runs failed: the table holds the others" >&2; exit 1; }
