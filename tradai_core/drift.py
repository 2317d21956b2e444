"""Population stability index (PSI) between a model's training window and a recent window.

Reference bins are fixed on the training window and stored with the model version; the drift check
compares the shares of a recent window in the same bins. See docs/models.md for the definitions.

Bins of one feature: the unique deciles of the training window, e_1 < ... < e_k (k <= 9), split the
line into 2k + 1 bins that alternate open intervals and single points:

    (-inf, e_1), [e_1], (e_1, e_2), [e_2], ..., [e_k], (e_k, +inf)

For a continuous feature the point bins are (nearly) empty and the intervals are the ten deciles. A
feature with heavy ties (a flag, a count, a value clipped at zero) keeps each tied value in its own
point bin instead of smearing it over neighbours, and a constant feature gets (-inf, c), [c], (c, +inf),
so a move either way is seen. The outer bins are open-ended: values outside the training range land
there, which is exactly where a shift shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

# A share below EPSILON (an empty bin included) counts as EPSILON, so that ln(actual / expected) stays
# finite; the shares are not renormalised afterwards.
EPSILON = 1e-4
WARNING_FROM = 0.1
DRIFT_FROM = 0.25
DECILES = np.linspace(0.1, 0.9, 9)

Band = Literal["fine", "warning", "drift"]
BAND_ORDER: tuple[Band, ...] = ("fine", "warning", "drift")


class DriftInputError(ValueError):
    """A window that PSI cannot be computed on: non-finite or non-numeric values, missing features, no rows."""


@dataclass(frozen=True)
class FeatureBins:
    edges: np.ndarray  # the unique training deciles, increasing
    shares: np.ndarray  # training share of each of the 2 * len(edges) + 1 bins; sums to 1


@dataclass(frozen=True)
class ReferenceBins:
    features: dict[str, FeatureBins]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, to store with a model version."""
        return {
            "rows": self.rows,
            "features": {
                name: {"edges": bins.edges.tolist(), "shares": bins.shares.tolist()}
                for name, bins in self.features.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceBins:
        features = {}
        for name, raw in data["features"].items():
            edges = np.asarray(raw["edges"], dtype="float64")
            shares = np.asarray(raw["shares"], dtype="float64")
            if len(shares) != 2 * len(edges) + 1 or np.any(np.diff(edges) <= 0):
                raise DriftInputError(f"stored reference bins of feature {name!r} are malformed")
            features[name] = FeatureBins(edges, shares)
        return cls(features, int(data["rows"]))


def _sorted_finite_columns(window: pd.DataFrame, features: list[str], role: str) -> list[np.ndarray]:
    """Each feature as a sorted float64 array; refuses what PSI cannot bin, naming the features."""
    missing = [name for name in features if name not in window.columns]
    if missing:
        raise DriftInputError(f"{role} window lacks feature(s) {missing}")
    if len(window) == 0:
        raise DriftInputError(f"{role} window has no rows")
    non_numeric = [name for name in features if not pd.api.types.is_numeric_dtype(window[name].dtype)]
    if non_numeric:
        raise DriftInputError(f"{role} window: feature(s) {non_numeric} are not numeric")
    columns = [np.sort(window[name].to_numpy(dtype="float64")) for name in features]
    # Sorted, -inf comes first and +inf and NaN last: the ends tell whether a column is all finite.
    bad = {
        name: int(column.size - np.isfinite(column).sum())
        for name, column in zip(features, columns)
        if not (np.isfinite(column[0]) and np.isfinite(column[-1]))
    }
    if bad:
        raise DriftInputError(
            f"{role} window has NaN or infinite values in feature(s) {bad} (feature: rows); "
            "fix the features or drop those rows before computing PSI"
        )
    return columns


def _bin_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e_1), [e_1], (e_1, e_2), ..., [e_k], (e_k, +inf) of already sorted values.

    Sorting once (vectorised in numpy) and then searching for the few edges is faster than binning
    value by value."""
    boundaries = np.empty(2 * len(edges), dtype="int64")
    boundaries[0::2] = np.searchsorted(sorted_values, edges, side="left")
    boundaries[1::2] = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(boundaries, prepend=0, append=len(sorted_values))


def _deciles(sorted_values: np.ndarray) -> np.ndarray:
    """numpy's default (linear) quantiles, read off sorted values instead of partitioning again."""
    position = DECILES * (len(sorted_values) - 1)
    below = np.floor(position).astype("int64")
    above = np.minimum(below + 1, len(sorted_values) - 1)
    low, high = sorted_values[below], sorted_values[above]
    # low + (high - low) * t is exact at t = 0 and keeps tied values exactly equal to the edge.
    return low + (high - low) * (position - below)


def reference_bins(training: pd.DataFrame, features: list[str] | None = None) -> ReferenceBins:
    """Decile edges and shares of every feature (all columns unless ``features`` is given)."""
    names = list(training.columns if features is None else features)
    columns = _sorted_finite_columns(training, names, "training")
    bins = {}
    for name, ordered in zip(names, columns):
        edges = np.unique(_deciles(ordered))
        bins[name] = FeatureBins(edges, _bin_counts(ordered, edges) / len(ordered))
    return ReferenceBins(bins, len(training))


def psi_of_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    """sum((actual - expected) * ln(actual / expected)) with both shares floored at EPSILON."""
    e = np.maximum(np.asarray(expected, dtype="float64"), EPSILON)
    a = np.maximum(np.asarray(actual, dtype="float64"), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def psi(reference: ReferenceBins, current: pd.DataFrame) -> pd.Series:
    """PSI of every reference feature between the training window and ``current``; indexed by feature."""
    names = list(reference.features)
    columns = _sorted_finite_columns(current, names, "current")
    result = np.empty(len(names))
    for i, (name, values) in enumerate(zip(names, columns)):
        bins = reference.features[name]
        result[i] = psi_of_shares(bins.shares, _bin_counts(values, bins.edges) / len(values))
    return pd.Series(result, index=pd.Index(names, name="feature"), name="psi")


def band(value: float) -> Band:
    """< 0.1 fine, 0.1 to 0.25 warning, >= 0.25 drift."""
    if not np.isfinite(value) or value < 0:
        raise DriftInputError(f"PSI must be a finite non-negative number, got {value}")
    if value < WARNING_FROM:
        return "fine"
    if value < DRIFT_FROM:
        return "warning"
    return "drift"


@dataclass(frozen=True)
class DriftReport:
    table: pd.DataFrame  # index feature; columns psi, band; worst first

    @property
    def worst_band(self) -> Band:
        return max(self.table["band"], key=BAND_ORDER.index)

    def features_in(self, level: Band) -> list[str]:
        return self.table.index[self.table["band"] == level].tolist()


def drift_report(reference: ReferenceBins, current: pd.DataFrame) -> DriftReport:
    values = psi(reference, current)
    table = pd.DataFrame({"psi": values, "band": [band(v) for v in values]})
    return DriftReport(table.sort_values("psi", ascending=False))
