#!/usr/bin/env bash
# The density program against the PyTorch peers on their own benchmarks, in one run:
# realnvp-moons (8 affine couplings, MLP 1-256-256-2, 2000 steps of 512) and nsf-mog
# (4 spline couplings, 8 bins, MLP 4-128-128-92, 1000 steps of 512, spline interval
# [-5, 5] as zuko; nflows' tail bound 3 leaves the mixture's tails to the identity and
# cost 0.07 nats in a pilot), same data formulas, Adam 1e-3, fresh batches, 10,000 test points, the final
# model (no early stopping).
#
#   PY=/path/to/peer-venv/bin/python benches/density_peer.sh
#
# Environment: PY (python with torch, zuko, nflows; see shared/peer/README.md), PEER (the
# peer directory, default ../shared/peer), SEEDS (default "0 1 2"), OUT (runs/density-peer),
# BIN (target/release/density; build it first with `cargo build --release -p density`),
# BENCHES ("realnvp-moons nsf-mog").
set -euo pipefail
PY=${PY:?set PY to the peer python (see shared/peer/README.md)}
PEER=${PEER:-../shared/peer}
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-runs/density-peer}
BIN=${BIN:-target/release/density}
BENCHES=${BENCHES:-"realnvp-moons nsf-mog"}
has() { [[ " $BENCHES " == *" $1 "* ]]; }
mkdir -p "$OUT"
: > "$OUT/peer.jsonl"
: > "$OUT/ours.jsonl"
ours() { # name seed flags...
  local name=$1 seed=$2; shift 2
  "$BIN" --seed "$seed" --patience 0 --out-dir "$OUT/$name-$seed" "$@" > /dev/null
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["bench"]=sys.argv[2]; d["seed"]=int(sys.argv[3]); print(json.dumps(d))' \
    "$OUT/$name-$seed/summary.json" "$name" "$seed" >> "$OUT/ours.jsonl"
}
for seed in $SEEDS; do
  for variant in zuko nflows; do
    if has realnvp-moons; then
      echo "peer realnvp-moons $variant seed $seed" >&2
      "$PY" "$PEER/realnvp_moons.py" --variant $variant --seed "$seed" --threads 2 >> "$OUT/peer.jsonl"
    fi
    if has nsf-mog; then
      echo "peer nsf-mog $variant seed $seed" >&2
      "$PY" "$PEER/nsf_mog.py" --variant $variant --seed "$seed" --threads 2 >> "$OUT/peer.jsonl"
    fi
  done
  if has realnvp-moons; then
    echo "ours realnvp-moons seed $seed" >&2
    ours realnvp-moons "$seed" --data peer-moons --flow realnvp --layers 8 --hidden 256 \
      --steps 2000 --batch 512 --eval-every 2000
  fi
  if has nsf-mog; then
    echo "ours nsf-mog seed $seed" >&2
    ours nsf-mog "$seed" --data mog8 --flow nsf --layers 4 --hidden 128 --bins 8 --bound 5 \
      --steps 1000 --batch 512 --eval-every 1000
  fi
done
python3 "$(dirname "$0")/density_peer_summary.py" "$OUT"
