#!/usr/bin/env bash
# The density program on the small real tables (docs/density.md, "Small real tables"):
# every (table, flow, seed) with the defaults and the table's test file, one line each:
#   table flow seed test-log-likelihood best-step steps-run seconds
# Usage (repository root): benches/tables/ours.sh [extra density flags...]
# Environment: FLOWS (default "nsf maf maf-spline"), SEEDS (default "0 1 2"), OUT (runs/tables).
set -euo pipefail
cargo build --release -p density
BIN=target/release/density
T=examples/density/data/tables
OUT=${OUT:-runs/tables}
mkdir -p "$OUT"
for table in breast_cancer wine diabetes; do
  for flow in ${FLOWS:-nsf maf maf-spline}; do
    for seed in ${SEEDS:-0 1 2}; do
      out="$OUT/$table-$flow-$seed"
      "$BIN" --data "$T/$table-train.csv" --test-file "$T/$table-test.csv" --flow "$flow" \
        --seed "$seed" --out-dir "$out" "$@" > "$out.log" 2>&1
      python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(sys.argv[2], \
        round(d['test_log_likelihood'], 3), d['best_step'], d['steps_run'], \
        round(d['train_seconds'], 1))" "$out/summary.json" "$table $flow $seed"
    done
  done
done
