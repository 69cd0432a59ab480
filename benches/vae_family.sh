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
# the run directory to redo one). Run on an otherwise idle machine: images/s is only
# comparable then.
set -euo pipefail
BIN=${BIN:-target/release/train-vae}
EPOCHS=${EPOCHS:-100}
WARMUP=${WARMUP:-10}
SEEDS=${SEEDS:-"0 1 2"}
S=${S:-5000}
OUT=${OUT:-runs/vae-family}
TABLE=${TABLE:-docs/train-vae/family.md}
EXTRA=${EXTRA:-}
DEFAULT_KINDS=(
  "none=--flow none"
  "planar=--flow planar --n-flows 16"
  "iaf=--flow iaf --n-flows 8"
  "householder=--flow householder --n-flows 16"
  "sylvester-o=--flow sylvester-o --n-flows 16"
  "sylvester-h=--flow sylvester-h --n-flows 16"
  "sylvester-t=--flow sylvester-t --n-flows 16"
)
if [ -n "${KINDS:-}" ]; then
  IFS=$'\n' read -r -d '' -a kinds <<< "$KINDS" || true
else
  kinds=("${DEFAULT_KINDS[@]}")
fi
mkdir -p "$OUT"
for seed in $SEEDS; do
  for pair in "${kinds[@]}"; do
    name=${pair%%=*}; flags=${pair#*=}
    dir="$OUT/$name-$seed"
    if [ -f "$dir/summary.json" ]; then
      echo "kept: $dir" >&2
      continue
    fi
    rm -rf "$dir"
    echo "$(date -u +%FT%TZ) train-vae: $name ($flags) seed $seed" >&2
    # shellcheck disable=SC2086
    "$BIN" $flags --epochs "$EPOCHS" --warmup-epochs "$WARMUP" --patience 0 \
      --iw-samples "$S" --seed "$seed" --out-dir "$dir" $EXTRA > "$OUT/$name-$seed.log" 2>&1
    echo "$name" > "$dir/kind"
  done
done
python3 "$(dirname "$0")/vae_family_summary.py" "$OUT" "$TABLE" "epochs $EPOCHS, warm-up $WARMUP, S=$S, seeds $SEEDS"
