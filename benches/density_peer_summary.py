"""Table of benches/density_peer.sh: test log-likelihood medians over seeds, ours vs each peer."""
import json
import statistics as st
import sys
from pathlib import Path

out = Path(sys.argv[1])
peer = [json.loads(l) for l in (out / "peer.jsonl").read_text().splitlines() if l.strip()]
ours = [json.loads(l) for l in (out / "ours.jsonl").read_text().splitlines() if l.strip()]

print("| benchmark | implementation | params | seeds | test log-lik (median) | min–max | exact | train steps/s |")
print("|---|---|---|---|---|---|---|---|")
for bench in ["realnvp-moons", "nsf-mog"]:
    rows = []
    for variant in ["zuko", "nflows"]:
        rs = [r for r in peer if r["bench"] == bench and r["variant"] == variant]
        if rs:
            ll = [r["test_ll"] for r in rs]
            exact = [r["test_ll_true_density"] for r in rs if r.get("test_ll_true_density") is not None]
            rows.append((f"{variant} (PyTorch)", rs[0]["params"], len(rs), st.median(ll), min(ll), max(ll),
                         st.median(exact) if exact else None, st.median(r["train_steps_per_s"] for r in rs)))
    rs = [r for r in ours if r["bench"] == bench]
    if rs:
        ll = [r["test_log_likelihood"] for r in rs]
        exact = [r["exact_test_log_likelihood"] for r in rs if r.get("exact_test_log_likelihood") is not None]
        rows.append((f"density ({rs[0]['backend']})", rs[0]["params"], len(rs), st.median(ll), min(ll), max(ll),
                     st.median(exact) if exact else None, st.median(r["steps_per_second"] for r in rs)))
    for r in rows:
        ex = f"{r[6]:.4f}" if r[6] is not None else "–"
        print(f"| {bench} | {r[0]} | {r[1]} | {r[2]} | {r[3]:.4f} | {r[4]:.4f}–{r[5]:.4f} | {ex} | {r[7]:.1f} |")
print()
print("Test log-likelihood: mean ln p over 10,000 fresh test points (nats per point), the final")
print("model after the same number of steps. \"exact\": the true mixture density on the same points.")
