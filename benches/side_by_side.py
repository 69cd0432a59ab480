#!/usr/bin/env python3
"""Side by side: the Rust ports (`ports`) and the PyTorch peers, alternately, in one run.

For each benchmark and each pair, runs the port (A) and then every peer variant (B),
all at the same thread count, and repeats (A B A B ...). Each program prints one JSON
line; they are appended to the output file. Then prints, for every throughput metric,
the Rust median, the fastest peer variant's median, and the ratio (Rust / peer, per pair)
as median [min, max] over the pairs, against the target.

    benches/side_by_side.py --python /path/to/peer-venv/bin/python      # or PY=...
    just bench-peers                                                     # the same

Only the standard library; the peers' Python environment is described in
`<peer>/README.md`. Take the numbers on an idle machine (`--wait-quiet` waits for one
before every run): with two threads the peers collapse when another process takes a core.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys

# (bench, peer script, peer variants, throughput metrics, quality metrics)
BENCHES = {
    "vae-planar": ("vae_planar.py", ["amortised", "normflows"],
                   ["train_images_per_s"], ["val_elbo", "val_nll_iw"]),
    "realnvp-moons": ("realnvp_moons.py", ["zuko", "nflows"],
                      ["train_steps_per_s", "logprob_samples_per_s", "sample_samples_per_s"],
                      ["test_ll"]),
    "maf-mnist": ("maf_mnist.py", ["zuko", "nflows"],
                  ["train_steps_per_s", "logprob_samples_per_s", "sample_samples_per_s"],
                  ["val_bits_per_dim_pixel"]),
    "nsf-mog": ("nsf_mog.py", ["zuko", "nflows"],
                ["train_steps_per_s", "logprob_samples_per_s", "sample_samples_per_s"],
                ["test_ll"]),
}

# The targets (ratio against the fastest peer).
TARGETS = {("maf-mnist", "train_steps_per_s"): 1.25,
           ("maf-mnist", "logprob_samples_per_s"): 1.25}
DEFAULT_TARGET = 2.0

# Dense matmul FLOPs of one maf-mnist training step (shared/peer/README.md, TRAIN_FLOPS).
MAF_TRAIN_FLOPS = 5.528e9

# Shorter runs for a quick look (the same arguments go to both sides).
QUICK = {"vae-planar": ["--epochs", "3", "--iw-samples", "10"],
         "realnvp-moons": ["--steps", "300"],
         "maf-mnist": ["--steps", "30", "--sample-batch", "16"],
         "nsf-mog": ["--steps", "300"]}
# The VAE's throughput is over epochs 2-3: train 3 epochs (of the peers' 10) by default.
DEFAULT_ARGS = {"vae-planar": ["--epochs", "3"]}


def run(cmd, env, wait_quiet, peer_dir):
    if wait_quiet:
        subprocess.run([os.path.join(peer_dir, "wait_quiet.sh"), "3"], check=True,
                       stdout=sys.stderr)
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"no JSON line from {' '.join(cmd)}")
    return json.loads(lines[-1])


def matmul_peaks(args, env):
    """2048³ f32 matmul GFLOP/s: torch's (the peers' `matmul_peak.py`), then ours."""
    torch = run([args.python, os.path.join(args.peer, "matmul_peak.py"), "--quick",
                 "--threads", str(args.threads)], env, args.wait_quiet, args.peer)
    ours = run([args.ports[0], "matmul", "--threads", str(args.threads)], env, args.wait_quiet,
               args.peer)
    return {"torch": torch["peak_2048_gflops_median"], "flow-rs": ours["peak_2048_gflops_median"],
            "flow-rs rows": ours["rows"]}


def table(records, threads, peaks):
    """Markdown tables: throughput ratios, then quality, from the JSON records."""
    peak = (peaks or {}).get("torch")
    lines = [f"| benchmark | metric | Rust median | fastest peer: median | ratio median [min, max] "
             f"| target | met |", "|---|---|---|---|---|---|---|"]
    quality = ["| benchmark | metric | Rust median | peer medians |", "|---|---|---|---|"]
    for bench, (_, variants, metrics, quals) in BENCHES.items():
        ours_all = [r for r in records if r["bench"] == bench and r["variant"].startswith("flow-rs")]
        if not ours_all:
            continue
        peers = {v: [r for r in records if r["bench"] == bench and r["variant"] == v]
                 for v in variants}
        peers = {v: rs for v, rs in peers.items() if rs}
        builds = sorted({r["variant"] for r in ours_all}, key=lambda v: v != "flow-rs/flex")
        for metric, build in [(m, b) for m in metrics for b in builds]:
            ours = [r for r in ours_all if r["variant"] == build]
            rust = [r[metric] for r in ours]
            best = max(peers, key=lambda v: statistics.median(r[metric] for r in peers[v]))
            peer = [r[metric] for r in peers[best]]
            ratios = [a / b for a, b in zip(rust, peer)]
            target = TARGETS.get((bench, metric), DEFAULT_TARGET)
            ratio = statistics.median(ratios)
            lines.append(
                f"| {bench} | {metric} ({build.split('/')[1]}) | {statistics.median(rust):.4g} "
                f"| {best}: {statistics.median(peer):.4g} "
                f"| **{ratio:.2f}×** [{min(ratios):.2f}, {max(ratios):.2f}] "
                f"| ≥ {target}× | {'yes' if ratio >= target else 'no'} |")
            if bench == "maf-mnist" and metric == "train_steps_per_s" and build == builds[0]:
                ours_rate = MAF_TRAIN_FLOPS * statistics.median(rust) / 1e9
                peer_rate = MAF_TRAIN_FLOPS * statistics.median(peer) / 1e9
                if peak:
                    own = (peaks or {}).get("flow-rs")
                    own_share = f"; {100 * ours_rate / own:.0f} % of our GEMM's {own:.0f}" if own else ""
                    lines.append(
                        f"| maf-mnist | ↳ train GFLOP/s (5.528 GFLOP/step), % of torch.mm 2048³ "
                        f"= {peak:.0f} | {ours_rate:.1f} = {100 * ours_rate / peak:.0f} %{own_share} "
                        f"| {best}: {peer_rate:.1f} = {100 * peer_rate / peak:.0f} % | | ≥ 60 % "
                        f"| {'yes' if ours_rate >= 0.6 * peak else 'no'} |")
        for metric in quals:
            ours = [r for r in ours_all if r["variant"] == builds[0]]
            if metric not in ours[0]:
                continue
            rust = statistics.median(r[metric] for r in ours)
            peer = ", ".join(f"{v} {statistics.median(r[metric] for r in rs):.4g}"
                             for v, rs in peers.items() if metric in rs[0])
            quality.append(f"| {bench} | {metric} | {rust:.4g} | {peer} |")
    pairs = max((sum(1 for r in records if r["bench"] == b and r["variant"] == "flow-rs/flex")
                 or sum(1 for r in records if r["bench"] == b and r["variant"].startswith("flow-rs"))
                 for b in BENCHES), default=0)
    loads = [r.get("loadavg_1m_at_end") for r in records if r.get("loadavg_1m_at_end") is not None]
    head = (f"{threads} threads, {pairs} pairs, 1-min load average at the end of runs "
            f"{min(loads):.2f}–{max(loads):.2f}" if loads else f"{threads} threads")
    if peaks:
        head += (f"; f32 matmul 2048³: torch.mm {peaks['torch']:.0f} GFLOP/s, "
                 f"ours {peaks['flow-rs']:.0f} GFLOP/s")
    return head + "\n\n" + "\n".join(lines) + "\n\nQuality (not timed):\n\n" + "\n".join(quality)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=os.environ.get("PY"),
                   help="python with torch, zuko, nflows, normflows (default $PY)")
    p.add_argument("--peer", default="../shared/peer", help="the peer benchmarks' directory")
    p.add_argument("--ports", nargs="+", default=["target/release/ports"],
                   help="the Rust ports' binaries (one per backend build; the first is the "
                        "one the matmul peak is measured with)")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--benches", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    p.add_argument("--out", default=None, help="JSON lines (default runs/side-by-side/<time>.jsonl)")
    p.add_argument("--markdown", default=None, help="also write the table here")
    p.add_argument("--quick", action="store_true", help="short runs (a smoke test, not numbers)")
    p.add_argument("--wait-quiet", action="store_true",
                   help="wait for idle CPUs before every run (the peer's wait_quiet.sh)")
    p.add_argument("--no-peak", action="store_true", help="skip the matmul peak")
    p.add_argument("--summarize", default=None, help="only print the table of this file")
    args = p.parse_args()
    if args.summarize:
        records = [json.loads(line) for line in open(args.summarize) if line.strip()]
        peaks = next((r["peaks"] for r in records if r.get("bench") == "matmul-peak"), None)
        threads = next((r["threads"] for r in records if "threads" in r), "?")
        print(table([r for r in records if r.get("bench") != "matmul-peak"], threads, peaks))
        return
    if not args.python:
        sys.exit("give the peers' python: --python PATH or PY=PATH (see <peer>/README.md)")
    for ports in args.ports:
        if not os.path.isfile(ports):
            sys.exit(f"{ports} not found: cargo build --release -p flow-benches --bin ports")
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS", "MATMUL_NUM_THREADS"):
        env[var] = str(args.threads)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or os.path.join("runs", "side-by-side", f"{stamp}.jsonl")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    records = []

    def keep(record):
        records.append(record)
        with open(out, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    peaks = None
    if not args.no_peak:
        peaks = matmul_peaks(args, env)
        keep({"bench": "matmul-peak", "peaks": peaks, "threads": args.threads})
    for pair in range(1, args.pairs + 1):
        for bench in args.benches:
            script, variants, _, _ = BENCHES[bench]
            extra = QUICK[bench] if args.quick else DEFAULT_ARGS.get(bench, [])
            common = ["--threads", str(args.threads), "--seed", str(pair)] + extra
            for ports in args.ports:
                keep(run([ports, bench] + common, env, args.wait_quiet, args.peer))
            for variant in variants:
                keep(run([args.python, os.path.join(args.peer, script), "--variant", variant]
                         + common, env, args.wait_quiet, args.peer))
        print(f"pair {pair} of {args.pairs} done", file=sys.stderr, flush=True)
    text = table([r for r in records if r["bench"] != "matmul-peak"], args.threads, peaks)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    print(f"records: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
