#!/usr/bin/env python3
"""Export three small real tables for the density comparison (examples/density).

Run (from the repository root, in a Python environment with numpy and scikit-learn;
tested with numpy 2.4.6, scikit-learn 1.9.1, Python 3):

    pip install numpy==2.4.6 scikit-learn==1.9.1
    python benches/tables/export_tables.py

Writes examples/density/data/tables/<name>-{train,test}.csv for
name in breast_cancer, wine, diabetes. The tables ship inside scikit-learn, so nothing is
downloaded. Output is deterministic for a given numpy version (numpy's PCG64
`default_rng` streams are stable across versions).

Preprocessing (also described in examples/density/data/tables/README.md):

* Only continuous or integer-valued measurement columns are kept: class labels
  (breast_cancer, wine) are not part of the table; diabetes' binary `sex` is dropped and its
  regression target (disease progression, integer) is kept as the last column.
* Dequantization, so that a density exists (no point masses):
  - an integer-valued column (every value an integer) gets + U(0,1) * g, g its smallest
    positive gap between distinct values (g = 1 for every such column here);
  - an "integer-recorded" column (at least 85 % of its values integers, the rest e.g.
    averages of integer readings such as 83.33) gets + U(0,1) * 1. Only diabetes' bp (90 %),
    s3 (99.8 %) and s4 (86 %) qualify; s4 alone has 128 of 442 rows at exactly 3.0 and 108
    at exactly 4.0, whose point masses a flow would otherwise turn into unbounded density.
    The next most integer column in any table is wine's alcalinity_of_ash (49 %).
  - other columns are kept as recorded (their ties are rounding to 2-5 significant digits).
  The noise is drawn with numpy.random.default_rng(NOISE_SEED), one draw per cell of the
  whole table in its original row order, before the split.
* No constant columns (checked).
* Split: rows shuffled with numpy.random.default_rng(SPLIT_SEED).permutation(n); the first
  floor(0.8 n) rows are train, the rest test.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from sklearn import datasets

SPLIT_SEED = 0
NOISE_SEED = 1
TRAIN_FRACTION = 0.8
INTEGER_RECORDED = 0.85  # fraction of integer values above which a column is integer-recorded

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "examples" / "density" / "data" / "tables"


def snake(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower()


def load() -> dict[str, tuple[np.ndarray, list[str]]]:
    bc = datasets.load_breast_cancer()
    wine = datasets.load_wine()
    diab = datasets.load_diabetes(scaled=False)
    keep = [i for i, f in enumerate(diab.feature_names) if f != "sex"]
    diab_x = np.column_stack([diab.data[:, keep], diab.target])
    diab_names = [diab.feature_names[i] for i in keep] + ["progression"]
    return {
        "breast_cancer": (bc.data.astype(np.float64), [snake(f) for f in bc.feature_names]),
        "wine": (wine.data.astype(np.float64), [snake(f) for f in wine.feature_names]),
        "diabetes": (diab_x.astype(np.float64), [snake(f) for f in diab_names]),
    }


def dequantize(x: np.ndarray, names: list[str], rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Adds the uniform noise described above; returns the table and a log of what it did."""
    noise = rng.random(x.shape)  # one draw per cell, whether used or not: stable streams
    out = x.copy()
    log = []
    for j, name in enumerate(names):
        col = x[:, j]
        is_int = col == np.round(col)
        values = np.unique(col)
        assert len(values) > 1, f"{name} is constant"
        if is_int.all():
            gap = float(np.diff(values).min())
            out[:, j] = col + noise[:, j] * gap
            log.append(f"{name}: integer-valued, + U(0,1) * {gap:g}")
        elif is_int.mean() >= INTEGER_RECORDED:
            out[:, j] = col + noise[:, j]
            log.append(f"{name}: integer-recorded ({is_int.mean():.1%} integers), + U(0,1) * 1")
    return out, log


def write_csv(path: Path, names: list[str], rows: np.ndarray) -> None:
    with path.open("w", newline="\n") as f:
        f.write(",".join(names) + "\n")
        for row in rows:
            f.write(",".join(f"{v:.10g}" for v in row) + "\n")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    noise_rng = np.random.default_rng(NOISE_SEED)
    for name, (x, cols) in load().items():
        x, log = dequantize(x, cols, noise_rng)
        assert np.isfinite(x).all()
        assert (x.std(axis=0) > 0).all()
        n = len(x)
        order = np.random.default_rng(SPLIT_SEED).permutation(n)
        n_train = int(np.floor(TRAIN_FRACTION * n))
        train, test = x[order[:n_train]], x[order[n_train:]]
        write_csv(OUT / f"{name}-train.csv", cols, train)
        write_csv(OUT / f"{name}-test.csv", cols, test)
        sizes = [(OUT / f"{name}-{p}.csv").stat().st_size for p in ("train", "test")]
        print(f"{name}: {n} rows x {x.shape[1]} columns -> train {len(train)}, test {len(test)} "
              f"({sizes[0] / 1024:.0f} KB + {sizes[1] / 1024:.0f} KB)")
        for line in log:
            print("   ", line)


if __name__ == "__main__":
    main()
