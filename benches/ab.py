#!/usr/bin/env python3
"""A/B of two builds of the ports: the same benchmarks, alternately, in one run.

For each benchmark and pair, runs build A then build B (A B A B ...) with the same
arguments and prints, for every throughput metric, B / A per pair as median [min, max],
and whether the quality metrics (losses, log-likelihoods) agree bit for bit.

    benches/ab.py --a /tmp/ports-before --b target/release/ports --pairs 3
    benches/ab.py --a A --b B --benches vae-planar --quick

Use it for refactors that must not change speed or results (docs/benchmarks.md keeps the
runs). Only the standard library.
"""

import argparse
import json
import statistics
import subprocess
import sys

from side_by_side import BENCHES, DEFAULT_ARGS, QUICK


def run(binary, bench, extra, threads):
    cmd = [binary, "--threads", str(threads), bench, *extra]
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"no JSON line from {' '.join(cmd)}")
    return json.loads(lines[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="the ports binary before")
    p.add_argument("--b", required=True, help="the ports binary after")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--benches", nargs="+", default=list(BENCHES), choices=list(BENCHES))
    p.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    p.add_argument("--out", default=None, help="append every record here (JSON lines)")
    args = p.parse_args()
    rows = []
    for bench in args.benches:
        _, _, metrics, quality = BENCHES[bench]
        extra = QUICK[bench] if args.quick else DEFAULT_ARGS.get(bench, [])
        runs = {"a": [], "b": []}
        for pair in range(args.pairs):
            for side in ("a", "b"):
                record = run(getattr(args, side), bench, extra, args.threads)
                record["ab"] = side
                runs[side].append(record)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(record) + "\n")
        for m in metrics:
            ratios = [b[m] / a[m] for a, b in zip(runs["a"], runs["b"])]
            rows.append((bench, m, statistics.median(r[m] for r in runs["a"]),
                         statistics.median(r[m] for r in runs["b"]),
                         statistics.median(ratios), min(ratios), max(ratios)))
        for q in quality:
            same = all(a.get(q) == b.get(q) for a, b in zip(runs["a"], runs["b"]))
            values = sorted({str(r.get(q)) for r in runs["a"] + runs["b"]})
            rows.append((bench, q, "bit for bit" if same else "DIFFERENT", ", ".join(values)))
    print("| benchmark | metric | A median | B median | B / A median [min, max] |")
    print("|---|---|---|---|---|")
    for row in rows:
        if len(row) == 7:
            bench, m, a, b, med, lo, hi = row
            print(f"| {bench} | {m} | {a:.4g} | {b:.4g} | {med:.3f} [{lo:.3f}, {hi:.3f}] |")
        else:
            bench, q, verdict, values = row
            print(f"| {bench} | {q} | {values} | | {verdict} |")


if __name__ == "__main__":
    main()
