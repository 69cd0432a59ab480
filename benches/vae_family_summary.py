#!/usr/bin/env python3
"""Table of benches/vae_family.sh's runs: medians over seeds per posterior kind.

usage: vae_family_summary.py RUNS_DIR TABLE.md "protocol line"
"""
import json
import statistics
import sys
from pathlib import Path


def main() -> None:
    runs, table, protocol = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    by_kind: dict[str, list[dict]] = {}
    order: list[str] = []
    for summary in sorted(runs.glob("*/summary.json")):
        kind_file = summary.parent / "kind"
        if not kind_file.exists():
            continue
        kind = kind_file.read_text().strip()
        s = json.loads(summary.read_text())
        metrics = [json.loads(l) for l in (summary.parent / "metrics.jsonl").read_text().splitlines() if l.strip()]
        best = next(m for m in metrics if m["epoch"] == s["best_epoch"])
        ips = [m["images_per_second"] for m in metrics[1:]] or [s["images_per_second"]]
        by_kind.setdefault(kind, []).append(
            {
                "flow": s["flow"],
                "neg_elbo": -s["eval"]["elbo"],
                "nll": s["eval"]["nll"],
                "kl": best["valid_kl"],
                "params": s["params"],
                "ips": statistics.median(ips),
                "samples": s["eval"]["samples"],
                "best": s["best_epoch"],
                "epochs": s["epochs"],
                "backend": s["backend"],
            }
        )
        if kind not in order:
            order.append(kind)
    none = by_kind.get("none")
    none_nll = statistics.median(r["nll"] for r in none) if none else None
    lines = [
        f"| posterior | seeds | −ELBO | IW-NLL | IW-NLL min–max | vs none | KL | best epoch | params | train images/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in sorted(order, key=lambda k: -statistics.median(r["nll"] for r in by_kind[k])):
        rs = by_kind[kind]
        med = lambda key: statistics.median(r[key] for r in rs)
        nlls = [r["nll"] for r in rs]
        vs = f"{med('nll') - none_nll:+.2f}" if none_nll is not None else "–"
        lines.append(
            f"| {kind} ({rs[0]['flow']}) | {len(rs)} | {med('neg_elbo'):.2f} | {med('nll'):.2f} "
            f"| {min(nlls):.2f}–{max(nlls):.2f} | {vs} | {med('kl'):.2f} | {med('best'):.0f}/{rs[0]['epochs']} "
            f"| {rs[0]['params']:,} | {med('ips'):.0f} |"
        )
    s_count = next(iter(by_kind.values()))[0]["samples"] if by_kind else 0
    backend = next(iter(by_kind.values()))[0]["backend"] if by_kind else "?"
    text = "\n".join(
        [
            f"# train-vae: the VAE-posterior family at equal budget",
            "",
            f"Protocol: {protocol}; backend {backend}; embedded digits (9,000 train / 1,000 "
            "validation), MLP architecture, batch 128, Adam 1e-3, best-validation checkpoint. "
            f"Written by `benches/vae_family.sh` from `{runs}`.",
            "",
            *lines,
            "",
            f"Medians over seeds, worst first. −ELBO and IW-NLL (S = {s_count}) in nats on the 1,000 "
            "validation digits (fixed binarization), from the best checkpoint; KL is the "
            "validation KL term at the best epoch; images/s is the median training "
            "throughput after the first epoch.",
            "",
        ]
    )
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
