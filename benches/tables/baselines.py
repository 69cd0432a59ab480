#!/usr/bin/env python3
"""Baselines on the small real tables: a full-covariance Gaussian and zuko's MAF and NSF.

One command, from the repository root (after export_tables.py has written the tables):

    python -m venv /tmp/venv && /tmp/venv/bin/pip install torch==2.15.0 zuko==1.6.0 \
        numpy==2.4.6 scikit-learn==1.9.1
    /tmp/venv/bin/python benches/tables/export_tables.py     # tables (already committed)
    /tmp/venv/bin/python benches/tables/baselines.py         # ~15-30 min on one CPU core

(CPU only, one thread. Tested with Python 3, torch 2.15.0, zuko 1.6.0, numpy 2.4.6.)
Options: --tables wine diabetes, --seeds 0 1 2, --no-adamw, --json PATH, --md PATH.

Protocol, per table (examples/density/data/tables/<name>-{train,test}.csv):

* Standardize every column with the mean and standard deviation (ddof = 0) of the whole
  train file. Every log-likelihood below is in the ORIGINAL units: the log-density of the
  standardized data minus sum_j log(std_j), averaged over the test rows (nats per row).
* Gaussian: full-covariance maximum-likelihood Gaussian (sample mean, covariance / n) of
  the whole train file; also of the 90 % fitting part only (what the flows train on).
* zuko 1.6 flows.MAF(features) and flows.NSF(features) with their default constructor
  arguments (3 transforms, hidden (64, 64), NSF 8 bins on [-5, 5]), float32.
  Validation: the same 10 % of the train file for every seed (floor(n/10) rows chosen by
  numpy.random.default_rng(0).permutation); the flows fit the other 90 %.
  Adam, lr 1e-3, batch 128 (the whole fitting part if smaller; the last batch of an epoch
  may be smaller), rows reshuffled each epoch. After every epoch the validation NLL is
  computed; training stops 30 epochs after the best one (or at 2000 epochs) and the
  best-validation weights are restored. The test log-likelihood is then computed in float64.
  Seeds 0, 1, 2 (torch.manual_seed for the initialisation and the batch order).
  Variant: AdamW with weight decay 1e-4 (everything else equal).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import torch
import zuko

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "examples" / "density" / "data" / "tables"
NAMES = ["breast_cancer", "wine", "diabetes"]

LR = 1e-3
BATCH = 128
PATIENCE = 30
MAX_EPOCHS = 2000
VALID_SEED = 0
WEIGHT_DECAY = 1e-4


def read(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)


def gaussian_ll(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Per-row log-density of `test` under the ML Gaussian of `train` (same units)."""
    mu = train.mean(axis=0)
    cov = np.cov(train, rowvar=False, bias=True)
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (test - mu).T).T
    d = train.shape[1]
    return -0.5 * (z**2).sum(axis=1) - np.log(np.diag(chol)).sum() - 0.5 * d * math.log(2 * math.pi)


@torch.no_grad()
def mean_log_prob(flow: torch.nn.Module, x: torch.Tensor) -> float:
    return flow().log_prob(x).mean().item()


@torch.no_grad()
def log_prob64(flow: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    f64 = copy.deepcopy(flow).double()
    return f64().log_prob(torch.from_numpy(x)).numpy()


def fit_flow(kind: str, fit: np.ndarray, valid: np.ndarray, seed: int, weight_decay: float) -> dict:
    d = fit.shape[1]
    torch.manual_seed(seed)
    flow = zuko.flows.MAF(d) if kind == "maf" else zuko.flows.NSF(d)
    if weight_decay > 0:
        opt = torch.optim.AdamW(flow.parameters(), lr=LR, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(flow.parameters(), lr=LR)
    xf = torch.from_numpy(fit).float()
    xv = torch.from_numpy(valid).float()
    batch = min(BATCH, len(xf))
    gen = torch.Generator().manual_seed(seed)
    best = (math.inf, -1, copy.deepcopy(flow.state_dict()))
    diverged = False
    start = time.perf_counter()
    epoch = 0
    for epoch in range(1, MAX_EPOCHS + 1):
        flow.train()
        for idx in torch.randperm(len(xf), generator=gen).split(batch):
            loss = -flow().log_prob(xf[idx]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        flow.eval()
        v = -mean_log_prob(flow, xv)
        if not math.isfinite(v) or not math.isfinite(loss.item()):
            diverged = True
            break
        if v < best[0]:
            best = (v, epoch, copy.deepcopy(flow.state_dict()))
        elif epoch - best[1] >= PATIENCE:
            break
    seconds = time.perf_counter() - start
    flow.load_state_dict(best[2])
    flow.eval()
    return {
        "flow": flow,
        "epochs": epoch,
        "best_epoch": best[1],
        "diverged": diverged,
        "seconds": seconds,
        "params": sum(p.numel() for p in flow.parameters()),
    }


def summary(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "spread": max(values) - min(values),
        "values": values,
    }


def run_table(name: str, seeds: list[int], variants: dict[str, float]) -> dict:
    train_raw = read(TABLES / f"{name}-train.csv")
    test_raw = read(TABLES / f"{name}-test.csv")
    n, d = train_raw.shape
    mean, std = train_raw.mean(axis=0), train_raw.std(axis=0)
    log_det = -float(np.log(std).sum())
    train, test = (train_raw - mean) / std, (test_raw - mean) / std

    order = np.random.default_rng(VALID_SEED).permutation(n)
    n_valid = n // 10
    valid, fit = train[order[:n_valid]], train[order[n_valid:]]

    # Rows of the test file with an exact zero (breast_cancer: 'no concavity' rows, zero in
    # all six concavity columns at once, a point mass the flows might exploit).
    zero_rows = (test_raw == 0).any(axis=1)

    out = {
        "train_rows": int(n),
        "fit_rows": int(len(fit)),
        "valid_rows": int(n_valid),
        "test_rows": int(len(test)),
        "columns": int(d),
        "log_det_standardization": log_det,
        "test_rows_with_a_zero": int(zero_rows.sum()),
    }
    t0 = time.perf_counter()
    g_all = gaussian_ll(train, test) + log_det
    g_fit = gaussian_ll(fit, test) + log_det
    out["gaussian"] = {
        "test_ll": float(g_all.mean()),
        "train_ll": float((gaussian_ll(train, train) + log_det).mean()),
        "test_ll_fit_part_only": float(g_fit.mean()),
        "test_ll_median_row": float(np.median(g_all)),
        "test_ll_worst_row": float(g_all.min()),
        "valid_ll_fit_part_only": float((gaussian_ll(fit, valid) + log_det).mean()),
        "seconds": time.perf_counter() - t0,
    }
    if zero_rows.any():
        out["gaussian"]["test_ll_rows_with_zero"] = float(g_all[zero_rows].mean())
        out["gaussian"]["test_ll_other_rows"] = float(g_all[~zero_rows].mean())
    print(f"[{name}] {n} train ({len(fit)} fit + {n_valid} valid), {len(test)} test, {d} columns; "
          f"Gaussian test LL {g_all.mean():.3f} (fit part only {g_fit.mean():.3f})", flush=True)

    for variant, wd in variants.items():
        for kind in ("maf", "nsf"):
            runs = []
            for seed in seeds:
                r = fit_flow(kind, fit, valid, seed, wd)
                flow = r.pop("flow")
                ll = log_prob64(flow, test) + log_det
                r["test_ll"] = float(ll.mean())
                r["test_ll_median_row"] = float(np.median(ll))
                r["test_ll_worst_row"] = float(ll.min())
                r["valid_ll"] = float((log_prob64(flow, valid) + log_det).mean())
                r["fit_ll"] = float((log_prob64(flow, fit) + log_det).mean())
                r["seed"] = seed
                if zero_rows.any():
                    r["test_ll_rows_with_zero"] = float(ll[zero_rows].mean())
                    r["test_ll_other_rows"] = float(ll[~zero_rows].mean())
                runs.append(r)
                print(f"[{name}] {kind} {variant} seed {seed}: test LL {r['test_ll']:.3f} "
                      f"(fit {r['fit_ll']:.3f}, valid {r['valid_ll']:.3f}), best epoch "
                      f"{r['best_epoch']}/{r['epochs']}, {r['seconds']:.1f} s", flush=True)
            out[f"{kind}_{variant}"] = {
                "test_ll": summary([r["test_ll"] for r in runs]),
                "seconds": summary([r["seconds"] for r in runs]),
                "params": runs[0]["params"],
                "runs": runs,
            }
    return out


def markdown(results: dict) -> str:
    meta = results["meta"]
    variants = meta["variants"]
    lines = [
        "# Small real tables: Gaussian vs zuko MAF / NSF",
        "",
        f"Mean test log-likelihood per row, nats, original units (higher is better). "
        f"zuko {meta['zuko']}, torch {meta['torch']}, default MAF/NSF, lr {LR}, batch {BATCH}, "
        f"patience {PATIENCE} epochs, seeds {meta['seeds']}: median [min, max]. "
        f"One CPU thread ({meta['machine']}). Time = median wall seconds per fit. "
        f"Produced by `benches/tables/baselines.py`.",
        "",
    ]
    header = "| table | rows fit/valid/test × cols | Gaussian (train file) | Gaussian (fit 90 %) |"
    sep = "|---|---|---|---|"
    for v in variants:
        for k in ("MAF", "NSF"):
            header += f" zuko {k} {v} | time |"
            sep += "---|---|"
    lines += [header, sep]
    for name, r in results["tables"].items():
        row = (f"| {name} | {r['fit_rows']}/{r['valid_rows']}/{r['test_rows']} × {r['columns']} | "
               f"{r['gaussian']['test_ll']:.2f} | {r['gaussian']['test_ll_fit_part_only']:.2f} |")
        for v in variants:
            for k in ("maf", "nsf"):
                s = r[f"{k}_{v}"]
                t = s["test_ll"]
                row += (f" {t['median']:.2f} [{t['min']:.2f}, {t['max']:.2f}] |"
                        f" {s['seconds']['median']:.1f} s |")
        lines.append(row)
    lines += ["", "Per fit: best epoch / epochs run, and mean LL on the fitting part (train) "
              "vs test (overfitting gap).", ""]
    lines += ["| table | model | seed | best epoch / epochs | fit LL | valid LL | test LL | "
              "test median row | test worst row | s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["tables"].items():
        g = r["gaussian"]
        lines.append(f"| {name} | Gaussian (train file) | – | – | {g['train_ll']:.2f} | – | "
                     f"{g['test_ll']:.2f} | {g['test_ll_median_row']:.2f} | "
                     f"{g['test_ll_worst_row']:.2f} | {g['seconds']:.3f} |")
        lines.append(f"| {name} | Gaussian (fit 90 %) | – | – | – | "
                     f"{g['valid_ll_fit_part_only']:.2f} | {g['test_ll_fit_part_only']:.2f} | – | – | – |")
        for v in variants:
            for k in ("maf", "nsf"):
                for run in r[f"{k}_{v}"]["runs"]:
                    lines.append(
                        f"| {name} | {k.upper()} {v} | {run['seed']} | {run['best_epoch']} / "
                        f"{run['epochs']}{' (diverged)' if run['diverged'] else ''} | "
                        f"{run['fit_ll']:.2f} | {run['valid_ll']:.2f} | {run['test_ll']:.2f} | "
                        f"{run['test_ll_median_row']:.2f} | {run['test_ll_worst_row']:.2f} | "
                        f"{run['seconds']:.1f} |")
    zero = [(n, r) for n, r in results["tables"].items() if r["test_rows_with_a_zero"]]
    for name, r in zero:
        lines += ["", f"{name}: {r['test_rows_with_a_zero']} test rows hold exact zeros "
                  "(mean test LL on those rows / on the others):", ""]
        lines.append(f"- Gaussian: {r['gaussian']['test_ll_rows_with_zero']:.2f} / "
                     f"{r['gaussian']['test_ll_other_rows']:.2f}")
        for v in variants:
            for k in ("maf", "nsf"):
                runs = r[f"{k}_{v}"]["runs"]
                z = statistics.median(x["test_ll_rows_with_zero"] for x in runs)
                o = statistics.median(x["test_ll_other_rows"] for x in runs)
                lines.append(f"- {k.upper()} {v} (median over seeds): {z:.2f} / {o:.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tables", nargs="+", default=NAMES)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--no-adamw", action="store_true")
    p.add_argument("--json", type=Path, default=Path(__file__).with_name("results-zuko.json"))
    p.add_argument("--md", type=Path, default=Path("runs/tables-results.md"))
    args = p.parse_args()

    torch.set_num_threads(1)
    variants = {"adam": 0.0} if args.no_adamw else {"adam": 0.0, "adamw": WEIGHT_DECAY}
    results = {
        "meta": {
            "torch": torch.__version__,
            "zuko": zuko.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, 1 thread",
            "seeds": args.seeds,
            "variants": list(variants),
            "lr": LR,
            "batch": BATCH,
            "patience_epochs": PATIENCE,
            "max_epochs": MAX_EPOCHS,
            "weight_decay_adamw": WEIGHT_DECAY,
            "valid_seed": VALID_SEED,
            "units": "mean test log-likelihood per row, nats, original (unstandardized) units",
        },
        "tables": {},
    }
    for name in args.tables:
        results["tables"][name] = run_table(name, args.seeds, variants)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
