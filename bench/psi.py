"""PSI over 50 features: reference bins fitted on 1M training rows, then PSI of a 100k-row recent window.

    .venv/bin/python -m bench.psi [--repeat 5]

The drift check computes PSI against bins stored with the model version (fitted once, at training);
both steps are timed.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from bench.common import best_of, median, report
from tradai_core.drift import psi, reference_bins

FEATURES = 50
REFERENCE_ROWS = 1_000_000
CURRENT_ROWS = 100_000
GOAL_SECONDS = 0.5


def synthetic_features(rows: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Continuous, heavy-tailed, and tied (a clipped, a discrete) features, as indicators look."""
    rng = np.random.default_rng(seed)
    columns = {}
    for i in range(FEATURES):
        kind = i % 4
        if kind == 0:
            values = rng.normal(shift, 1.0, rows)
        elif kind == 1:
            values = rng.standard_t(3, rows) + shift
        elif kind == 2:
            values = np.maximum(rng.normal(shift, 1.0, rows), 0.0)
        else:
            values = rng.integers(0, 7, rows).astype("float64")
        columns[f"feature_{i:02d}"] = values
    return pd.DataFrame(columns)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    training = synthetic_features(REFERENCE_ROWS, seed=1)
    recent = synthetic_features(CURRENT_ROWS, seed=2, shift=0.3)
    bins = reference_bins(training)
    values = psi(bins, recent)
    assert len(values) == FEATURES and values.iloc[0::4].gt(0.05).all()  # the shift shows

    psi_best, psi_all = best_of(lambda: psi(bins, recent), args.repeat)
    fit_best, fit_all = best_of(lambda: reference_bins(training), args.repeat)
    both_best, both_all = best_of(lambda: psi(reference_bins(training), recent), args.repeat)
    print(report(
        f"PSI: {FEATURES} features, {REFERENCE_ROWS:,} reference rows, {CURRENT_ROWS:,} current rows "
        f"(goal <= {GOAL_SECONDS} s)",
        "python -m bench.psi",
        [
            f"best of {args.repeat} in one process; continuous, heavy-tailed, clipped and discrete features",
            f"PSI of the recent window against stored reference bins (what the drift check does): **{psi_best:.3f} s** "
            f"(median {median(psi_all):.3f})",
            f"fitting the reference bins on the training window (once per model version): {fit_best:.3f} s "
            f"(median {median(fit_all):.3f})",
            f"both from raw rows: {both_best:.3f} s (median {median(both_all):.3f})",
            f"all runs (s): PSI {', '.join(f'{t:.3f}' for t in psi_all)}; fit {', '.join(f'{t:.3f}' for t in fit_all)}",
        ],
    ))


if __name__ == "__main__":
    main()
