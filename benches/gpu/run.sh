#!/usr/bin/env bash
# The GPU run: flow-rs on one NVIDIA GPU (wgpu over Vulkan, and CUDA; each fused and
# unfused) against the PyTorch peers on CUDA, same models and protocols as their CPU
# benchmarks, in one table of ratios, plus the kernel launches per training step of the four
# peer models beside PyTorch eager's operator counts.
#
#   PY=/path/to/python benches/gpu/run.sh          # from the repository root or anywhere
#   benches/gpu/run.sh --quick                     # any wgpu adapter (lavapipe): proves the
#                                                  # script in minutes, not the numbers
#
# Needs: the Rust toolchain, crates already in ~/.cargo (no network: `cargo fetch` once
# beforehand), the NVIDIA driver (with its Vulkan ICD for wgpu), and PY: a Python with torch
# (CUDA build), zuko, nflows and normflows (shared/peer/README.md). Sized for ~10 minutes on a
# 16-core machine, build included: 2 release builds (~3 min each cold, the second mostly
# shared), then per backend variant vae-planar (3 epochs, 2 timed), maf-mnist (100 steps)
# and nsf-mog (1000 steps); the launch counts (benches/launches/count.py, wgpu); the
# fused-kernel criterion benchmark in --quick mode; the peers once each (PyTorch's fastest
# variant per benchmark decides the ratio).
#
# --quick: the dev profile (the build the tests use), BACKENDS=wgpu, tiny sizes, the peers on
# the CPU (skipped when PY has no torch), the launch count of one model, no criterion run.
#
# Every program runs on DEVICES (default GPU 0; --quick: the adapter wgpu picks alone); a
# machine with several GPUs can set DEVICES=0,1 for train-vae on cuda (docs/scaling.md).
#
# Environment: PY (python, default python3), OUT (runs/gpu), BACKENDS ("wgpu cuda"), DEVICES,
# SKIP_BENCH=1 (no criterion run), DATA (MNIST idx file for the peers; default: the one
# train-vae embeds).
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK=
[[ "${1:-}" == "--quick" ]] && QUICK=1
PY=${PY:-python3}
OUT=${OUT:-runs/gpu}
if [[ -n "$QUICK" ]]; then
  BACKENDS=${BACKENDS:-wgpu}
  SKIP_BENCH=1
  PROFILE=(); TARGET=target/debug
  PEER_DEVICE=cpu
  DEVICES=${DEVICES:-default}
else
  BACKENDS=${BACKENDS:-"wgpu cuda"}
  PROFILE=(--release); TARGET=target/release
  PEER_DEVICE=cuda
  DEVICES=${DEVICES:-0}
fi
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
  if [[ -z "$QUICK" ]]; then
    stamp "fused kernels against their references on the GPU ($be)"
    cargo test --release -p flow-core --features "$be" --test fused >&2
  fi
  stamp "build ($be)"
  cargo build "${PROFILE[@]}" -p train-vae -p density -p flow-benches --bin ports \
    --features "$be" >&2
  mkdir -p "$OUT/bin-$be"
  cp "$TARGET/train-vae" "$TARGET/density" "$TARGET/ports" "$OUT/bin-$be/"
done

record() { # bench backend summary.json
  python3 -c 'import json,sys; d=json.load(open(sys.argv[3])); d["bench"]=sys.argv[1]; d["backend"]=sys.argv[2]; print(json.dumps(d))' \
    "$1" "$2" "$3" >> "$OUT/ours.jsonl"
}
if [[ -n "$QUICK" ]]; then
  VAE=(--epochs 2 --n-train 512 --n-valid 128 --iw-samples 2 --iw-rows 64)
  MAF=(--steps 4 --eval-every 4)
  NSF=(--steps 20 --eval-every 20)
else
  VAE=(--epochs 3 --iw-samples 10 --iw-rows 1000)
  MAF=(--steps 100 --eval-every 100)
  NSF=(--steps 1000 --eval-every 1000)
fi
for be in $BACKENDS; do
  bin="$OUT/bin-$be"
  # burn's fused backend (burn-fusion) and the plain one with flow-kernels' GPU kernels.
  for variant in "$be" "$be-unfused"; do
    stamp "vae-planar ($variant)"
    # Several devices only where burn 0.21 can run them (CUDA, unfused); one elsewhere.
    devices=$DEVICES
    [[ "$variant" == cuda-unfused ]] || devices=${DEVICES%%,*}
    "$bin/train-vae" --backend "$variant" --devices "$devices" "${VAE[@]}" --warmup-epochs 0 --patience 0 \
      --out-dir "$OUT/$variant-vae" > /dev/null
    record vae-planar "$variant" "$OUT/$variant-vae/summary.json"
    stamp "maf-mnist ($variant)"
    "$bin/density" --backend "$variant" --devices "${DEVICES%%,*}" --data mnist --flow maf --layers 5 --hidden 512 \
      --batch 128 --lr 1e-4 "${MAF[@]}" --patience 0 --out-dir "$OUT/$variant-maf" > /dev/null
    record maf-mnist "$variant" "$OUT/$variant-maf/summary.json"
    stamp "nsf-mog ($variant)"
    "$bin/density" --backend "$variant" --devices "${DEVICES%%,*}" --data mog8 --flow nsf --layers 4 --hidden 128 \
      --bins 8 --bound 5 --batch 512 "${NSF[@]}" --patience 0 --out-dir "$OUT/$variant-nsf" \
      > /dev/null
    record nsf-mog "$variant" "$OUT/$variant-nsf/summary.json"
  done
done

if [[ " $BACKENDS " == *" wgpu "* ]]; then
  stamp "kernel launches per step (wgpu)"
  python3 benches/launches/count.py --ports "$OUT/bin-wgpu/ports" ${QUICK:+--quick} \
    --out "$OUT/launches.json" --md "$OUT/launches.md" > /dev/null
fi

if "$PY" -c "import torch, zuko, nflows, normflows" 2> /dev/null; then
  peer() { stamp "peer $*"; "$PY" "$PEER/$1" "${@:2}" --device "$PEER_DEVICE" >> "$OUT/peer.jsonl"; }
  if [[ -n "$QUICK" ]]; then
    peer vae_planar.py --variant amortised --epochs 2 --throughput-epochs 1 --iw-samples 2 --data "$DATA"
    peer maf_mnist.py --variant zuko --steps 4 --warmup-steps 1 --data "$DATA"
    peer nsf_mog.py --variant zuko --steps 20 --warmup-steps 2
  else
    peer vae_planar.py --variant amortised --epochs 3 --throughput-epochs 2 --iw-samples 10 --data "$DATA"
    for variant in zuko nflows; do
      peer maf_mnist.py --variant "$variant" --data "$DATA"
      peer nsf_mog.py --variant "$variant"
    done
  fi
else
  stamp "peers skipped: $PY lacks torch, zuko, nflows or normflows"
fi

if [[ -z "${SKIP_BENCH:-}" ]]; then
  for be in $BACKENDS; do
    stamp "fused kernels vs reference ($be)"
    cargo bench -p flow-benches --features "$be" --bench fused -- --quick 2>&1 \
      | tee "$OUT/fused-$be.txt" | grep -E "^(planar|rq_spline)|time:" >&2 || true
  done
fi

stamp "done"
python3 benches/gpu/summary.py "$OUT"
