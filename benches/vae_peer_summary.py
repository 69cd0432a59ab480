"""Table of benches/vae_peer.sh results: medians over seeds, throughput ratio to the peer."""
import json
import statistics as st
import sys
from pathlib import Path

out = Path(sys.argv[1])
peer_file = out / "peer.jsonl"
peer = [json.loads(l) for l in peer_file.read_text().splitlines() if l.strip()] if peer_file.exists() else []
ours = [json.loads(l) for l in (out / "ours.jsonl").read_text().splitlines() if l.strip()]


def med(xs):
    return st.median(xs) if xs else float("nan")


rows = []
peer_rate = {}
for k, flow in [(10, "planar K=10"), (0, "none K=0")]:
    rs = [r for r in peer if r["flows"] == k]
    if not rs:
        continue
    rate = med([r["train_images_per_s"] for r in rs])
    peer_rate[flow] = rate
    nll = [r["val_nll_iw"] for r in rs]
    rows.append(("PyTorch peer", flow, len(rs), -med([r["val_elbo"] for r in rs]),
                 med(nll), min(nll), max(nll), rate, 1.0))
for backend in sorted({r["backend"] for r in ours}):
    for flow in sorted({r["flow"] for r in ours if r["backend"] == backend}):
        rs = [r for r in ours if r["backend"] == backend and r["flow"] == flow]
        if not rs:
            continue
        rate = med([r["images_per_second"] for r in rs])
        ref = peer_rate.get(flow, peer_rate.get("planar K=10"))
        nll = [r["eval"]["nll"] for r in rs]
        rows.append((f"train-vae ({backend})", flow, len(rs), -med([r["eval"]["elbo"] for r in rs]),
                     med(nll), min(nll), max(nll), rate, rate / ref if ref else float("nan")))

S = ours[0]["eval"]["samples"] if ours else "?"
print(f"| implementation | posterior | seeds | −ELBO (S={S}) | IW-NLL (S={S}) | IW-NLL min–max | train images/s | vs peer |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.2f}–{r[6]:.2f} | {r[7]:.0f} | {r[8]:.2f}× |")
print()
print("Medians over seeds. −ELBO and IW-NLL on the 1,000 validation digits (fixed binarization,")
print("seed 1234). Throughput: median training images/s after the first epoch; \"vs peer\" divides")
print("by the peer with the same posterior (radial by the peer's planar).")
