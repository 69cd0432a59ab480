#!/usr/bin/env python3
"""Where the time of a Rust port goes: `perf record` on one `ports` run, CPU samples grouped
by what the sampled function does (the GEMM kernels, element-wise ops, memory traffic,
the autodiff graph, the optimizer, our fused kernels, thread hand-offs).

    benches/profile.py --ports target/release/ports -- realnvp-moons --steps 300
    just profile realnvp-moons --steps 300

Needs Linux `perf` (Debian's linux-perf). Self time per symbol (`--no-children`), so every
sample counts once; percentages are of all CPU samples of the process (both threads).
"""

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

# (category, regular expression on the symbol), first match wins.
CATEGORIES = [
    ("GEMM (gemm crate / matrixmultiply kernels and packing)", r"gemm|matrixmultiply|sgemm"),
    ("fused CPU kernels (flow_kernels, FusedAdam, their pulp-dispatched loops)",
     r"flow_kernels|FusedAdam|pulp::"),
    ("zeroing and copying memory (memset/memmove, page faults, to_contiguous)",
     r"memset|memmove|memcpy|clear_page|page_fault|do_anonymous_page|to_contiguous|StridedIter"),
    ("allocator (mimalloc / malloc / free)", r"^_?mi_|malloc|free|mmap|munmap"),
    ("element-wise and reduction ops (burn-flex / ndarray, libm)",
     r"burn_flex::ops|burn_ndarray|ndarray::|macerator|exp|log|tanh|sqrt|pow|softplus"),
    ("autodiff graph bookkeeping", r"burn_autodiff"),
    ("optimizer (burn-optim)", r"burn_optim"),
    ("thread hand-offs (rayon, futex, scheduler)",
     r"rayon|futex|sched|switch|wake|spin|syscall|sleep|yield"),
]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ports", default="target/release/ports")
    p.add_argument("--top", type=int, default=12, help="also list the top N symbols")
    p.add_argument("args", nargs="+", help="the ports' arguments (after --)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        subprocess.run(["perf", "record", "-F", "999", "-o", data, args.ports] + args.args,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        report = subprocess.run(
            ["perf", "report", "-i", data, "--no-children", "--sort", "symbol", "--stdio"],
            check=True, capture_output=True, text=True).stdout
    shares = collections.Counter()
    symbols = []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[.k]\]\s+(.*\S)", line)
        if not m:
            continue
        share, symbol = float(m.group(1)), m.group(2)
        symbols.append((share, symbol))
        category = next((c for c, rx in CATEGORIES if re.search(rx, symbol)), "other")
        shares[category] += share
    print(f"ports {' '.join(args.args)}")
    for category, share in shares.most_common():
        print(f"  {share:5.1f} %  {category}")
    print("  top symbols:")
    for share, symbol in symbols[:args.top]:
        print(f"  {share:5.1f} %  {symbol[:110]}")


if __name__ == "__main__":
    sys.exit(main())
