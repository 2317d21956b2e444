"""A vectorised ``get_tick_size_over_time``, Freqtrade's own result computed without strings.

Freqtrade derives each pair's price precision per month from the candles
(``freqtrade.data.btanalysis.historic_precision``): it prints every open, high, low and close with
``numpy.format_float_positional(precision=14, unique=False, fractional=False, trim="-")``, counts the
digits after the point up to the last non-zero one with a regex, takes the row-wise and then monthly
maximum, and returns ``1 / 10 ** count``. That string work is about half of a long backtest.

The count is the number of fractional digits of the value rounded to 14 significant digits, which
arithmetic gives: with ``e = floor(log10(|x|))``, ``D = round(|x| * 10 ** (13 - e))`` is the
14-digit significand and the count is ``13 - e - trailing_zeros(D)`` (none when that is not
positive). The product is computed in ``numpy.longdouble`` with an exact power of ten, so its
rounding error is bounded; every value whose rounding that error could change (near a half, near a
power of ten, far outside any price range) is printed by Freqtrade's own formatter instead. The
result, including the helper columns Freqtrade leaves in the candles and their dtypes, is
identical to Freqtrade's.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd

PRICE_COLUMNS = ("open", "high", "low", "close")
SIGNIFICANT_DIGITS = 14
_FRACTION = re.compile(r"\.(\d*[1-9])")


def _exact_powers_of_ten() -> np.ndarray:
    """10**0 .. 10**k in longdouble for every k whose power is exactly representable."""
    significand_bits = np.finfo(np.longdouble).nmant + 1
    powers = [np.longdouble(1)]
    # 10**n = 2**n * 5**n is exact while 5**n fits the significand.
    while 5 ** len(powers) < 2**significand_bits:
        powers.append(powers[-1] * np.longdouble(10))
    return np.array(powers, dtype=np.longdouble)


_POWERS = _exact_powers_of_ten()
# Half an ulp of a significand below 1e14 < 2**47, with a wide margin.
_TOLERANCE = float(2.0 ** (47 - (np.finfo(np.longdouble).nmant + 1)) * 8)


def _printed_fraction_digits(value: float) -> float:
    """Freqtrade's definition, value by value: NaN when the printed value has no fractional digit."""
    printed = np.format_float_positional(value, precision=SIGNIFICANT_DIGITS, unique=False, fractional=False, trim="-")
    match = _FRACTION.search(printed)
    return float(len(match.group(1))) if match else np.nan


def fraction_digits(values: np.ndarray) -> np.ndarray:
    """Per value, the digits after the point of its 14-significant-digit print (NaN for none)."""
    x = np.abs(np.asarray(values, dtype=np.float64))
    counts = np.full(x.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.floor(np.log10(x))
    shift = 13 - exponent  # 10**shift brings the value to 14 integer digits
    fast = np.isfinite(x) & (x > 0) & (shift >= 0) & (shift < len(_POWERS))
    idx = np.flatnonzero(fast)
    scaled = x[idx].astype(np.longdouble) * _POWERS[shift[idx].astype(np.int64)]
    fractional_part = scaled - np.floor(scaled)
    safe = (
        (scaled >= np.longdouble(1e13)) & (scaled < np.longdouble(1e14) - np.longdouble(1))
        & (np.abs(fractional_part - np.longdouble(0.5)) > _TOLERANCE)
    )
    idx, scaled, exps = idx[safe], scaled[safe], exponent[idx[safe]].astype(np.int64)
    significand = np.rint(scaled).astype(np.int64)
    trailing = np.zeros(significand.shape, dtype=np.int64)
    for _ in range(SIGNIFICANT_DIGITS - 1):
        zero = (significand % 10 == 0) & (significand != 0)
        if not zero.any():
            break
        significand = np.where(zero, significand // 10, significand)
        trailing += zero
    digits = (13 - exps - trailing).astype(np.float64)
    counts[idx] = np.where(digits > 0, digits, np.nan)
    # NaN, inf, zero and values outside the exact range take Freqtrade's own printed path (rare).
    slow = np.ones(x.shape, dtype=bool)
    slow[idx] = False
    for i in np.flatnonzero(slow):
        counts[i] = _printed_fraction_digits(float(values[i]))
    return counts


def vectorised_tick_size_over_time(candles: pd.DataFrame) -> pd.Series:
    """``freqtrade.data.btanalysis.get_tick_size_over_time`` computed arithmetically, same result."""
    from freqtrade.data.btanalysis import historic_precision

    counts = {col: fraction_digits(candles[col].to_numpy()) for col in PRICE_COLUMNS}
    if len(candles) == 0 or any(np.isnan(c).all() for c in counts.values()):
        # Freqtrade's string accessor behaves differently on such columns: let it answer itself.
        return historic_precision.get_tick_size_over_time(candles)
    for col in PRICE_COLUMNS:
        count = counts[col]
        # pandas' str.len() gives int64 when every value matched, float64 with NaN otherwise.
        candles[f"{col}_count"] = count if np.isnan(count).any() else count.astype(np.int64)

    # From here on, Freqtrade's own code.
    candles["max_count"] = candles[["open_count", "close_count", "high_count", "low_count"]].max(axis=1)
    candles1 = candles.set_index("date", drop=True)
    monthly_count_avg1 = candles1["max_count"].resample("MS").max()
    return 1 / 10**monthly_count_avg1


_patch_lock = threading.Lock()
_patch_users = 0


@contextlib.contextmanager
def vectorised_tick_size(enabled: bool = True) -> Iterator[None]:
    """Within the block, Freqtrade's backtesting uses the vectorised tick size.

    Counted, so overlapping blocks in threads of one process restore Freqtrade's function only when
    the last one ends."""
    global _patch_users
    if not enabled:
        yield
        return
    import freqtrade.optimize.backtesting as backtesting
    from freqtrade.data.btanalysis import historic_precision

    with _patch_lock:
        _patch_users += 1
        backtesting.get_tick_size_over_time = vectorised_tick_size_over_time
    try:
        yield
    finally:
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                backtesting.get_tick_size_over_time = historic_precision.get_tick_size_over_time
