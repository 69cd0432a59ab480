#!/usr/bin/env bash
# The GPU run: flow-rs on one NVIDIA GPU (wgpu over Vulkan, and CUDA) against the PyTorch
# peers on CUDA, same models and protocols as their CPU benchmarks, in one table of ratios.
#
#   PY=/path/to/python benches/gpu/run.sh          # from the repository root or anywhere
#
# Needs: the Rust toolchain, crates already in ~/.cargo (no network: `cargo fetch` once
# beforehand), the NVIDIA driver (with its Vulkan ICD for wgpu), and PY: a Python with torch
# (CUDA build), zuko, nflows and normflows (shared/peer/README.md). Sized for ~10 minutes on a
# 16-core machine, build included: 2 release builds (~3 min each cold, the second mostly
# shared), then per backend vae-planar (3 epochs, 2 timed), maf-mnist (100 steps) and
# nsf-mog (1000 steps); the fused-kernel criterion benchmark in --quick mode; the peers once
# each (PyTorch's fastest variant per benchmark decides the ratio).
#
# Environment: PY (python, default python3), OUT (runs/gpu), BACKENDS ("wgpu cuda"),
# SKIP_BENCH=1 (no criterion run), DATA (MNIST idx file for the peers; default: the one
# train-vae embeds).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
OUT=${OUT:-runs/gpu}
BACKENDS=${BACKENDS:-"wgpu cuda"}
DATA=${DATA:-$(ls crates/train-vae/data/*idx3-ubyte.gz | head -1)}
PEER=benches/gpu/peer
mkdir -p "$OUT"
: > "$OUT/ours.jsonl"
: > "$OUT/peer.jsonl"
export CARGO_NET_OFFLINE=true
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start ))s] $*" >&2; }

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >&2 || true

for be in $BACKENDS; do
  stamp "fused kernels against their references on the GPU ($be)"
  cargo test --release -p flow-core --features "$be" --test fused >&2
  stamp "build ($be)"
  cargo build --release -p train-vae -p density --features "$be" >&2
  mkdir -p "$OUT/bin-$be"
  cp target/release/train-vae target/release/density "$OUT/bin-$be/"
done

record() { # bench backend summary.json
  python3 -c 'import json,sys; d=json.load(open(sys.argv[3])); d["bench"]=sys.argv[1]; d["backend"]=sys.argv[2]; print(json.dumps(d))' \
    "$1" "$2" "$3" >> "$OUT/ours.jsonl"
}
for be in $BACKENDS; do
  bin="$OUT/bin-$be"
  stamp "vae-planar ($be)"
  "$bin/train-vae" --epochs 3 --warmup-epochs 0 --patience 0 --iw-samples 10 --iw-rows 1000 \
    --out-dir "$OUT/$be-vae" > /dev/null
  record vae-planar "$be" "$OUT/$be-vae/summary.json"
  stamp "maf-mnist ($be)"
  "$bin/density" --data mnist --flow maf --layers 5 --hidden 512 --batch 128 --lr 1e-4 \
    --steps 100 --eval-every 100 --patience 0 --out-dir "$OUT/$be-maf" > /dev/null
  record maf-mnist "$be" "$OUT/$be-maf/summary.json"
  stamp "nsf-mog ($be)"
  "$bin/density" --data mog8 --flow nsf --layers 4 --hidden 128 --bins 8 --bound 5 \
    --steps 1000 --batch 512 --eval-every 1000 --patience 0 --out-dir "$OUT/$be-nsf" > /dev/null
  record nsf-mog "$be" "$OUT/$be-nsf/summary.json"
done

peer() { stamp "peer $*"; "$PY" "$PEER/$1" "${@:2}" --device cuda >> "$OUT/peer.jsonl"; }
peer vae_planar.py --variant amortised --epochs 3 --throughput-epochs 2 --iw-samples 10 --data "$DATA"
for variant in zuko nflows; do
  peer maf_mnist.py --variant "$variant" --data "$DATA"
  peer nsf_mog.py --variant "$variant"
done

if [[ -z "${SKIP_BENCH:-}" ]]; then
  for be in $BACKENDS; do
    stamp "fused kernels vs reference ($be)"
    cargo bench -p flow-benches --features "$be" --bench fused -- --quick 2>&1 \
      | tee "$OUT/fused-$be.txt" | grep -E "^(planar|rq_spline)|time:" >&2 || true
  done
fi

stamp "done"
python3 benches/gpu/summary.py "$OUT"
