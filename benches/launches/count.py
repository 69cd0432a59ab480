#!/usr/bin/env python3
"""Count our kernel launches per training step and per log_prob
batch for the four peer benchmarks' models (the Rust ports, `benches/ports/`), on wgpu,
for each backend variant, and write them beside PyTorch eager's operator counts
(benches/launches/torch-ops.json, from torch_ops.py).

    python3 benches/launches/count.py [--ports target/release/ports] [--quick] \
        [--variants wgpu,wgpu-unfused,wgpu-unfused-reference] [--models ...] \
        [--out benches/launches/launches.json] [--md FILE]

How: cubecl's profiling logger at level "minimal" writes one line ("Executing <kernel>")
per launch; a `cubecl.toml` in the directory the program runs from (cubecl reads it from
there) switches it on. Identical runs give identical counts. (Bytes allocated are not
counted: cubecl 0.10's memory logger opens its file once per memory manager and loses
lines at exit, so its counts vary between identical runs.) CUBECL_AUTOTUNE_LEVEL=minimal
keeps autotuning's trial launches few. Each count is the difference of two runs that differ
only in the work counted (two more training steps, one more log_prob pass), so start-up,
compilation, autotuning and the final evaluation cancel; a first, discarded run fills
cubecl's autotune cache so that both runs of a pair find it full.

Variants: `wgpu` is burn's fused backend (burn-fusion; flow-kernels' CubeCL kernels do not
run on it), `wgpu-unfused` the plain CubeBackend with flow-kernels' kernels (planar, splines),
`wgpu-unfused-reference` the same with the kernels off (FLOW_KERNELS=off): flow-core's
tensor-op references.

Launch counts do not depend on the GPU: any wgpu adapter gives the same numbers (CI's
lavapipe included); only the time per launch differs.
"""

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

# (model, ports arguments of the shorter run, the longer run, steps between them,
#  log_prob pass arguments (base, plus one), rows per log_prob pass, batches per pass)
MODELS = {
    "realnvp-moons": {
        "args": ["realnvp-moons", "--warmup-steps", "1", "--test-n", "10000"],
        "steps": ("--steps", 3, 5),
        "logprob": ("--logprob-passes", 1, 2),
        "rows": "10,000 rows",
    },
    "maf-mnist": {
        "args": ["maf-mnist", "--warmup-steps", "1", "--logprob-batch", "1000"],
        "steps": ("--steps", 3, 5),
        "logprob": ("--logprob-passes", 1, 2),
        "rows": "1,000 rows",
    },
    "nsf-mog": {
        "args": ["nsf-mog", "--warmup-steps", "1", "--test-n", "10000"],
        "steps": ("--steps", 3, 5),
        "logprob": ("--logprob-passes", 1, 2),
        "rows": "10,000 rows",
    },
    # 2 steps per epoch (256 images, batch 128): epochs 2 → 3 adds 2 steps. No IW
    # evaluation (the VAE's log_prob is an estimate, not a pass of the flow).
    "vae-planar": {
        "args": [
            "vae-planar", "--throughput-epochs", "1", "--train-images", "256",
            "--iw-samples", "0",
        ],
        "steps": ("--epochs", 2, 3),
        "steps_per_unit": 2,
        "logprob": None,
    },
}

VARIANTS = {
    "wgpu": ("wgpu", {}),
    "wgpu-unfused": ("wgpu-unfused", {}),
    "wgpu-unfused-reference": ("wgpu-unfused", {"FLOW_KERNELS": "off"}),
}

def run(ports, backend, env_extra, args, workdir):
    """Runs ports once in `workdir`; returns its launches by kernel name."""
    launches = os.path.join(workdir, "launches.log")
    # cubecl opens the file without truncating it: a shorter run would leave the tail of
    # the previous one.
    if os.path.exists(launches):
        os.remove(launches)
    with open(os.path.join(workdir, "cubecl.toml"), "w") as f:
        f.write(f'[profiling.logger]\nlevel = "minimal"\nfile = "{launches}"\nappend = false\n')
    env = dict(os.environ, CUBECL_AUTOTUNE_LEVEL="minimal", RUST_LOG="warn", **env_extra)
    subprocess.run(
        [ports, *args, "--backend", backend, "--threads", "2"],
        cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    kernels = collections.Counter()
    with open(launches, errors="replace") as f:
        for line in f:
            if "Executing " in line:
                parts = line.split("Executing ", 1)[1].strip().split(" | ")
                # Kernel names list their generic parameters; the kernel and its operation
                # (`KernelBinop | AddOp`) are what a reader can act on.
                ops = [t for t in parts[1:] if t.endswith("Op")]
                kernels[" ".join([parts[0], *ops[:1]])] += 1
    return kernels


def difference(ports, backend, env_extra, base, flag, lo, hi, units, workdir):
    """Per-unit launches, total and by kernel: run(hi) − run(lo)."""
    k_lo = run(ports, backend, env_extra, [*base, flag, str(lo)], workdir)
    k_hi = run(ports, backend, env_extra, [*base, flag, str(hi)], workdir)
    n = (hi - lo) * units
    by_kernel = {k: (k_hi[k] - k_lo.get(k, 0)) / n for k in k_hi}
    by_kernel = {k: v for k, v in sorted(by_kernel.items(), key=lambda kv: -kv[1]) if v > 0}
    return {
        "launches": (sum(k_hi.values()) - sum(k_lo.values())) / n,
        "by_kernel": by_kernel,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ports", default="target/release/ports")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--out", default="benches/launches/launches.json")
    p.add_argument("--torch", default="benches/launches/torch-ops.json")
    p.add_argument("--md", help="also write the markdown table here")
    p.add_argument("--quick", action="store_true",
                   help="one model (realnvp-moons), the fused variant: proves the script")
    a = p.parse_args()
    ports = os.path.abspath(a.ports)
    models = ["realnvp-moons"] if a.quick else a.models.split(",")
    variants = ["wgpu"] if a.quick else a.variants.split(",")
    results = []
    for model in models:
        spec = MODELS[model]
        for variant in variants:
            backend, env_extra = VARIANTS[variant]
            with tempfile.TemporaryDirectory(prefix="launches-") as workdir:
                start = time.time()
                flag, lo, hi = spec["steps"]
                units = spec.get("steps_per_unit", 1)
                # The density ports evaluate with fixed work (one log_prob pass, no timed
                # loops) in every run, so that only the counted work differs.
                fixed = [spec["logprob"][0], str(spec["logprob"][1])] if spec["logprob"] else []
                # Fills the autotune cache (kept in the working directory's target/).
                run(ports, backend, env_extra, [*spec["args"], *fixed, flag, str(lo)], workdir)
                row = {"model": model, "variant": variant}
                row["train_step"] = difference(
                    ports, backend, env_extra, [*spec["args"], *fixed], flag, lo, hi, units,
                    workdir)
                if spec["logprob"]:
                    lflag, llo, lhi = spec["logprob"]
                    row["logprob_batch"] = difference(
                        ports, backend, env_extra, [*spec["args"], flag, str(lo)], lflag,
                        llo, lhi, 1, workdir)
                    row["logprob_rows"] = spec["rows"]
                row["seconds"] = round(time.time() - start, 1)
            print(f"{model:14s} {variant:24s} train step {row['train_step']['launches']:7.1f}"
                  f" launches" + (f", log_prob batch {row['logprob_batch']['launches']:.1f}"
                                  if "logprob_batch" in row else "") + f" ({row['seconds']} s)",
                  file=sys.stderr)
            results.append(row)
    out = {
        "what": "wgpu kernel launches per training step / log_prob batch "
                "of the ports of the peer benchmarks; see the script's docstring",
        "script": "benches/launches/count.py",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "results": results,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    if a.md:
        with open(a.md, "w") as f:
            f.write(table(results, a.torch))
    print(table(results, a.torch))


def torch_totals(path):
    """(model, variant) → (kernels per step with a multi-tensor Adam, as CUDA runs it by
    default; kernels per log_prob batch)."""
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError:
        return {}
    out = {}
    for r in d["results"]:
        opt = r["optimizer_variants"]
        loop = next(v for k, v in opt.items() if k.startswith("default"))
        foreach = next(v for k, v in opt.items() if k.startswith("foreach"))
        step = r["train_step_total"]["kernels"] - loop["kernels"] + foreach["kernels"]
        out[(r["bench"], r["variant"])] = (step, r.get("logprob", {}).get("kernels"))
    return out


def table(results, torch_path):
    torch = torch_totals(torch_path)
    by_model = collections.OrderedDict()
    for r in results:
        by_model.setdefault(r["model"], {})[r["variant"]] = r
    lines = [
        "| model | ours: wgpu (fused) | wgpu-unfused (kernels) | wgpu-unfused (references) "
        "| PyTorch eager, fewest (variant) | ours per log_prob batch (fused / unfused) "
        "| PyTorch per log_prob batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, rows in by_model.items():
        def cell(v, key="train_step"):
            return f"{rows[v][key]['launches']:.0f}" if v in rows and key in rows[v] else "–"
        peers = [(t[0], variant) for (m, variant), t in torch.items() if m == model]
        fewest = min(peers) if peers else None
        peer_lp = [t[1] for (m, _), t in torch.items() if m == model and t[1] is not None]
        lines.append(
            f"| {model} | {cell('wgpu')} | {cell('wgpu-unfused')} | "
            f"{cell('wgpu-unfused-reference')} | "
            + (f"{fewest[0]:.0f} ({fewest[1]})" if fewest else "–")
            + f" | {cell('wgpu', 'logprob_batch')} / {cell('wgpu-unfused', 'logprob_batch')} | "
            + (f"{min(peer_lp):.0f}" if peer_lp else "–")
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
