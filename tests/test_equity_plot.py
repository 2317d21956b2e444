"""The equity plot draws a decimated curve that keeps every stretch's lowest and highest value."""

import numpy as np
import pandas as pd

from tradai_assets.backtests import equity_png, plotted_points


def equity(rows: int) -> pd.DataFrame:
    index = pd.date_range("2023-01-01", periods=rows, freq="5min", tz="UTC", name="date")
    return pd.DataFrame({"equity": np.cumsum(np.random.default_rng(1).normal(size=rows))}, index=index)


def test_a_long_curve_is_decimated_keeping_peaks_and_troughs():
    curve = equity(105_000)
    shown = plotted_points(curve, points=2000)
    assert len(shown) <= 4000 and shown.index.is_monotonic_increasing
    # Every stretch's extremes (stretches of ceil(105000 / 2000) rows) appear in the plotted points.
    size = -(-len(curve) // 2000)
    for start in range(0, len(curve), size):
        part = curve["equity"].iloc[start:start + size]
        assert part.min() in set(shown["equity"]) and part.max() in set(shown["equity"])


def test_a_short_curve_is_drawn_whole_and_the_png_renders():
    curve = equity(3000)
    assert plotted_points(curve, points=2000) is curve
    assert equity_png(curve, "short").startswith(b"\x89PNG")
