#!/usr/bin/env bash
# train-vae against the PyTorch peer (shared/peer/vae_planar.py --variant amortised), in one
# run on one machine: same data split, epochs, batch, optimizer, S, seeds.
#
#   PY=/path/to/peer-venv/bin/python benches/vae_peer.sh
#
# Environment: PY (python with torch + normflows, see shared/peer/README.md), PEER (the
# peer directory, default ../shared/peer), SEEDS (default "0 1 2"), EPOCHS (10), S (500),
# OUT (runs/vae-peer), BINS ("ndarray=target/release/train-vae": name=binary pairs; build
# each binary first, e.g. `cargo build --release -p train-vae --features flex` and copy it),
# FLOWS ("none planar radial"; also iaf), NFLOWS (their K, 10), PEER_FLOWS ("10 0"), WARMUP (KL warm-up epochs for both
# sides, default 0 = the peer's own objective; > 0 runs the peer through
# benches/peer/vae_planar_warmup.py, its model with train-vae's warm-up), EXTRA (more
# train-vae flags).
# Run on an otherwise idle machine: throughput numbers are only comparable then.
set -euo pipefail
PY=${PY:?set PY to the peer python (see shared/peer/README.md)}
PEER=${PEER:-../shared/peer}
SEEDS=${SEEDS:-"0 1 2"}
EPOCHS=${EPOCHS:-10}
S=${S:-500}
OUT=${OUT:-runs/vae-peer}
BINS=${BINS:-"ndarray=target/release/train-vae"}
FLOWS=${FLOWS:-"none planar radial"}
PEER_FLOWS=${PEER_FLOWS-"10 0"}   # flow counts the peer runs ("" = no peer runs)
WARMUP=${WARMUP:-0}
NFLOWS=${NFLOWS:-10}               # flow steps K of train-vae's posteriors
EXTRA=${EXTRA:-}                   # extra train-vae flags
mkdir -p "$OUT"
for seed in $SEEDS; do
  for k in $PEER_FLOWS; do
    echo "peer: amortised planar K=$k seed $seed" >&2
    if [ "$WARMUP" -gt 0 ]; then
      peer=("$(dirname "$0")/peer/vae_planar_warmup.py" --peer "$PEER" --warmup-epochs "$WARMUP")
    else
      peer=("$PEER/vae_planar.py" --variant amortised)
    fi
    "$PY" "${peer[@]}" --flows "$k" --epochs "$EPOCHS" \
      --iw-samples "$S" --seed "$seed" --threads 2 >> "$OUT/peer.jsonl"
  done
  for pair in $BINS; do
    name=${pair%%=*}; bin=${pair#*=}
    for flow in $FLOWS; do
      dir="$OUT/$name-$flow-$seed"
      rm -rf "$dir"
      echo "train-vae ($name): $flow K=$NFLOWS seed $seed" >&2
      "$bin" --flow "$flow" --n-flows "$NFLOWS" --epochs "$EPOCHS" --patience 0 --iw-samples "$S" \
        --seed "$seed" --warmup-epochs "$WARMUP" --out-dir "$dir" $EXTRA > /dev/null
      python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); d["seed"]=int(sys.argv[2]); print(json.dumps(d))' \
        "$dir/summary.json" "$seed" >> "$OUT/ours.jsonl"
    done
  done
done
python3 "$(dirname "$0")/vae_peer_summary.py" "$OUT"
