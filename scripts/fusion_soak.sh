#!/usr/bin/env bash
# Repeats the runs that lost tensor handles on burn-fusion 0.21 ("Should have handle for
# tensor") before train-vae kept burn-train's threads off the device (train_vae::handoff):
# train-vae with one step per epoch and a checkpoint every epoch (burn-train's checkpointer
# threads read the model and optimizer state 300 times), and a density fit that saves its
# model every 5 steps, both on the fused wgpu backend. Fails on the first run that fails.
#
#   scripts/fusion_soak.sh [RUNS]    # default 20; BIN_DIR (target/debug), OUT (/tmp/fusion-soak)
# Results: docs/architecture.md, "Threads and burn-fusion".
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}
BIN_DIR=${BIN_DIR:-target/debug}
OUT=${OUT:-/tmp/fusion-soak}
mkdir -p "$OUT"
for i in $(seq 1 "$RUNS"); do
  rm -rf "$OUT/vae" "$OUT/density"
  start=$(date +%s)
  "$BIN_DIR/train-vae" --backend wgpu --out-dir "$OUT/vae" --n-train 64 --n-valid 16 \
    --batch-size 64 --epochs 300 --patience 0 --iw-samples 2 --encoder-hidden 256 \
    --decoder-hidden 256 --latent 8 --n-flows 2 --seed "$i" > "$OUT/vae.log" 2>&1 \
    || { echo "run $i: train-vae failed"; grep -m3 -i "panicked\|error" "$OUT/vae.log"; exit 1; }
  "$BIN_DIR/density" --backend wgpu --data 8gaussians --flow maf --layers 2 --hidden 16 \
    --batch 32 --steps 300 --eval-every 5 --patience 0 --seed "$i" --out-dir "$OUT/density" \
    > "$OUT/density.log" 2>&1 \
    || { echo "run $i: density failed"; grep -m3 -i "panicked\|error" "$OUT/density.log"; exit 1; }
  echo "run $i of $RUNS: clean ($(( $(date +%s) - start )) s)"
done
echo "$RUNS runs, no failure"
