"""Prints the GPU run's tables: flow-rs training throughput per backend against the fastest
PyTorch peer variant (on CUDA; on the CPU with run.sh --quick), as a ratio (> 1: flow-rs
faster), and the kernel launches per training step (benches/launches/count.py).

usage: python3 benches/gpu/summary.py runs/gpu
"""

import json
import os
import sys

# bench -> (our summary key, the peer's key, unit)
METRICS = {
    "vae-planar": ("images_per_second", "train_images_per_s", "images/s"),
    "maf-mnist": ("steps_per_second", "train_steps_per_s", "steps/s"),
    "nsf-mog": ("steps_per_second", "train_steps_per_s", "steps/s"),
}


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    out = sys.argv[1]
    ours = read(os.path.join(out, "ours.jsonl"))
    peers = read(os.path.join(out, "peer.jsonl"))
    gpu = next((p.get("gpu") for p in peers if p.get("gpu")), "unknown GPU")
    torch = peers[0]["versions"]["torch"] if peers else "none run"
    print(f"GPU: {gpu}; peers: torch {torch}")
    print()
    print("| benchmark | training | flow-rs backend | flow-rs | fastest peer | peer | ratio |")
    print("|---|---|---|---|---|---|---|")
    for bench, (key, peer_key, unit) in METRICS.items():
        candidates = [p for p in peers if p.get("bench") == bench]
        if not candidates:
            continue
        best = max(candidates, key=lambda p: p[peer_key])
        for o in (o for o in ours if o.get("bench") == bench):
            ratio = o[key] / best[peer_key]
            print(f"| {bench} | {unit} | {o['backend']} | {o[key]:.1f} | "
                  f"{best['variant']} | {best[peer_key]:.1f} | {ratio:.2f}x |")
    if not peers:
        print()
        for o in ours:
            print(f"{o['bench']} on {o['backend']}: {o.get(METRICS[o['bench']][0])}")
    launches = os.path.join(out, "launches.md")
    if os.path.exists(launches):
        print()
        print("Kernel launches per training step (wgpu) and PyTorch eager's operators:")
        print()
        with open(launches) as f:
            print(f.read())


if __name__ == "__main__":
    main()
