"""The PyTorch family (vae_family_torch.py's JSON lines) beside train-vae's runs of the same
kinds and seeds (vae_family.sh's raw summaries): one markdown table of medians over seeds.

    python3 benches/peer/vae_family_torch_table.py docs/train-vae/family-100ep-torch.jsonl \
        docs/train-vae/family-100ep-runs.jsonl
"""

import json
import statistics
import sys

ORDER = ["none", "planar", "iaf", "iaf/train-vae", "sylvester-t", "sylvester-h", "sylvester-o"]


def main(torch_path, ours_path):
    ours = {}
    for line in open(ours_path):
        r = json.loads(line)
        ours.setdefault(r["kind"], {})[r["seed"]] = (-r["eval"]["elbo"], r["eval"]["nll"])
    peer = {}
    for line in open(torch_path):
        r = json.loads(line)
        if r.get("iaf_change"):
            continue  # the IAF ablations, read in the docs one by one
        kind = r["flow"] + ("/train-vae" if r.get("iaf_style") == "train-vae" else "")
        peer.setdefault(kind, {})[r["seed"]] = r
    med = statistics.median
    print("| posterior | seeds | PyTorch −ELBO | PyTorch IW-NLL | PyTorch per seed (−ELBO / IW-NLL) "
          "| train-vae −ELBO, same seeds | train-vae IW-NLL, same seeds | PyTorch params |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ORDER:
        if kind not in peer:
            continue
        runs = peer[kind]
        seeds = sorted(runs)
        per = ", ".join(f"{runs[s]['neg_elbo']:.2f} / {runs[s]['nll']:.2f}" for s in seeds)
        mine = ours.get(kind.split("/")[0], {})
        same = [mine[s] for s in seeds if s in mine]
        ours_cells = (f"{med(x[0] for x in same):.2f} | {med(x[1] for x in same):.2f}"
                      if len(same) == len(seeds) else "– | –")
        print(f"| {kind} | {', '.join(map(str, seeds))} "
              f"| {med(runs[s]['neg_elbo'] for s in seeds):.2f} "
              f"| {med(runs[s]['nll'] for s in seeds):.2f} | {per} | {ours_cells} "
              f"| {runs[seeds[0]]['params']:,} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
