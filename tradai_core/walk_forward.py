"""Walk-forward optimisation: windows over the stored candles, the in-sample search and out-of-sample
backtest of each window, and the stitched out-of-sample result.

Windows are whole UTC days, because backtests run on Freqtrade's ``YYYYMMDD-YYYYMMDD`` timeranges.
Rolling windows slide the train span forward by ``step``; anchored windows keep the first train start
and grow the train span by ``step`` each time. Each test span starts where its train span ends. The
step defaults to the test span, so the test spans tile the data; a shorter step is refused (test spans
would overlap and a trade would count twice), a longer one leaves gaps between test spans.

A walk-forward needs at least two windows: with one there is no stability to judge and nothing to
stitch, which a plain backtest of the split answers as well.

Stitching is additive: every window's out-of-sample backtest starts from Freqtrade's configured
wallet, and the stitched curve adds each window's gains to the previous window's end balance. With a
fixed ``stake_amount`` (the product's default) a trade's profit does not depend on the balance, so
adding is what one continuous run would show; compounding would scale profits that Freqtrade did not
scale. Freqtrade closes open trades at the end of each backtest, so no trade spans two windows.

Walk-forward efficiency is the out-of-sample annualised return over the in-sample annualised return
(Pardo). Returns are annualised linearly (total return x 365 / days): compounding a few days' return
over a year inflates it beyond meaning. It is undefined (None) when the in-sample return is not
positive.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

DAY = pd.Timedelta(days=1)
MODES = ("rolling", "anchored")
# Objectives a search may rank trials by: Freqtrade's statistic of each name; higher is better.
OBJECTIVES = {
    "sharpe": "sharpe",
    "sortino": "sortino",
    "calmar": "calmar",
    "profit": "profit_total",
    "profit_abs": "profit_total_abs",
    "cagr": "cagr",
}


class WalkForwardError(ValueError):
    """A walk-forward that cannot run; the message names the setting or window at fault."""


def parse_span(name: str, value: str | pd.Timedelta) -> pd.Timedelta:
    """A span such as ``"30d"`` or ``"2w"``, as a whole number of days."""
    try:
        span = pd.Timedelta(value)
    except (ValueError, TypeError) as exc:
        raise WalkForwardError(f"{name} {value!r} is not a time span (e.g. '30d')") from exc
    if span is pd.NaT:
        raise WalkForwardError(f"{name} {value!r} is not a time span (e.g. '30d')")
    if span <= pd.Timedelta(0):
        raise WalkForwardError(f"{name} must be positive, got {value!r}")
    if span % DAY:
        raise WalkForwardError(f"{name} {value!r} is not a whole number of days (backtests run on day timeranges)")
    return span


def _days(span: pd.Timedelta) -> str:
    return f"{span // DAY}d"


@dataclass(frozen=True)
class WalkForwardSpec:
    train: pd.Timedelta
    test: pd.Timedelta
    step: pd.Timedelta
    mode: str = "rolling"

    @classmethod
    def parse(
        cls,
        train: str | pd.Timedelta,
        test: str | pd.Timedelta,
        step: str | pd.Timedelta | None = None,
        mode: str = "rolling",
    ) -> WalkForwardSpec:
        if mode not in MODES:
            raise WalkForwardError(f"mode {mode!r} is not one of {', '.join(MODES)}")
        train_span, test_span = parse_span("train", train), parse_span("test", test)
        step_span = test_span if step is None else parse_span("step", step)
        if step_span < test_span:
            raise WalkForwardError(
                f"step {_days(step_span)} is shorter than the test span {_days(test_span)}: "
                "out-of-sample spans would overlap and count trades twice"
            )
        return cls(train_span, test_span, step_span, mode)

    def describe(self) -> dict[str, str]:
        return {"mode": self.mode, "train": _days(self.train), "test": _days(self.test), "step": _days(self.step)}


def _timerange(start: pd.Timestamp, end: pd.Timestamp) -> str:
    return f"{start:%Y%m%d}-{end:%Y%m%d}"


@dataclass(frozen=True)
class Window:
    index: int
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    @property
    def train_timerange(self) -> str:
        return _timerange(self.train_start, self.train_end)

    @property
    def test_timerange(self) -> str:
        return _timerange(self.test_start, self.test_end)

    @property
    def train_days(self) -> int:
        return (self.train_end - self.train_start) // DAY

    @property
    def test_days(self) -> int:
        return (self.test_end - self.test_start) // DAY


def windows(spec: WalkForwardSpec, first: pd.Timestamp, end: pd.Timestamp) -> list[Window]:
    """The windows over stored candles from ``first`` (the first candle's open) to ``end`` (the last
    candle's close), using only whole days of data."""
    start, stop = first.ceil("D"), end.floor("D")
    available = f"the stored candles' whole days {start:%Y-%m-%d} to {stop:%Y-%m-%d} ({max(stop - start, pd.Timedelta(0)) // DAY}d)"
    if spec.train + spec.test > stop - start:
        raise WalkForwardError(
            f"a window (train {_days(spec.train)} + test {_days(spec.test)} = {_days(spec.train + spec.test)}) "
            f"is longer than the data: {available}"
        )
    out = []
    for index in itertools.count():
        train_start = start if spec.mode == "anchored" else start + index * spec.step
        train_end = start + spec.train + index * spec.step
        test_end = train_end + spec.test
        if test_end > stop:
            break
        out.append(Window(index, train_start, train_end, train_end, test_end))
    if len(out) < 2:
        raise WalkForwardError(
            f"{spec.mode} windows of train {_days(spec.train)}, test {_days(spec.test)}, step {_days(spec.step)} "
            f"give {len(out)} window over {available}; a walk-forward needs at least 2 "
            "(shorten the train or test span, or the step)"
        )
    return out


# Grids and objectives -----------------------------------------------------------------------------


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in the order given (the first parameter varies slowest)."""
    if not grid:
        raise WalkForwardError("the grid is empty: give a list of values for at least one parameter")
    for name, values in grid.items():
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) == 0:
            raise WalkForwardError(f"grid parameter {name!r}: expected a non-empty list of values, got {values!r}")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]


def objective_value(stats: Mapping[str, Any], objective: str) -> float:
    if objective not in OBJECTIVES:
        raise WalkForwardError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    value = stats.get(OBJECTIVES[objective])
    return float("-inf") if value is None else float(value)


def best_trial(
    trials: Sequence[tuple[dict[str, Any], Mapping[str, Any]]], objective: str, min_trades: int, what: str
) -> dict[str, Any]:
    """The parameters of the trial with the highest objective among those with at least ``min_trades``
    trades; the first such trial wins a tie. ``what`` names the span in the error."""
    eligible = [(params, stats) for params, stats in trials if int(stats.get("total_trades", 0)) >= min_trades]
    if not eligible:
        counts = ", ".join(f"{p} -> {int(s.get('total_trades', 0))}" for p, s in trials)
        raise WalkForwardError(f"{what}: no trial made at least {min_trades} trade(s) ({counts})")
    best = max(range(len(eligible)), key=lambda i: (objective_value(eligible[i][1], objective), -i))
    return dict(eligible[best][0])


# One walk-forward ---------------------------------------------------------------------------------


@dataclass
class WindowOutcome:
    """What a backtest of one span hands back."""

    trades: pd.DataFrame
    """Freqtrade's trades (``profit_abs``, ``open_date``, ``close_date`` ...)."""
    equity: pd.DataFrame
    """Account value per candle: column ``equity``, UTC index."""
    stats: dict[str, Any]
    """Freqtrade's statistics (``starting_balance``, ``profit_total``, ``sharpe`` ...)."""


Optimise = Callable[[str], dict[str, Any]]
Backtest = Callable[[dict[str, Any], str], WindowOutcome]


def annualised_return(profit_total: float, days: float) -> float:
    """Linear annualisation: total return x 365 / days."""
    return float(profit_total) * 365.0 / float(days)


def efficiency(out_of_sample: float, in_sample: float) -> float | None:
    """Walk-forward efficiency: out-of-sample over in-sample annualised return; None when the
    in-sample return is not positive (the ratio would mean nothing)."""
    return None if in_sample <= 0 else out_of_sample / in_sample


def _figures(stats: Mapping[str, Any], days: int) -> dict[str, float]:
    profit = float(stats.get("profit_total") or 0.0)
    return {
        "profit": profit,
        "profit_abs": float(stats.get("profit_total_abs") or 0.0),
        "annual_return": annualised_return(profit, days),
        "sharpe": float(stats.get("sharpe") or 0.0),
        "trades": int(stats.get("total_trades") or 0),
    }


@dataclass
class WalkForwardResult:
    windows: list[Window]
    params: list[dict[str, Any]]
    in_sample: list[WindowOutcome]
    out_of_sample: list[WindowOutcome]
    figures_in_sample: list[dict[str, float]] = field(init=False)
    figures_out_of_sample: list[dict[str, float]] = field(init=False)

    def __post_init__(self) -> None:
        self.figures_in_sample = [
            _figures(o.stats, w.train_days) for w, o in zip(self.windows, self.in_sample, strict=True)
        ]
        self.figures_out_of_sample = [
            _figures(o.stats, w.test_days) for w, o in zip(self.windows, self.out_of_sample, strict=True)
        ]

    def trades(self) -> pd.DataFrame:
        return stitch_trades(self.out_of_sample)

    def equity(self) -> pd.DataFrame:
        return stitch_equity(self.out_of_sample)

    def window_table(self) -> pd.DataFrame:
        rows = []
        for window, params, is_, oos in zip(
            self.windows, self.params, self.figures_in_sample, self.figures_out_of_sample, strict=True
        ):
            rows.append(
                {
                    "window": window.index,
                    "train": window.train_timerange,
                    "test": window.test_timerange,
                    "params": dict(params),
                    **{f"is_{k}": v for k, v in is_.items()},
                    **{f"oos_{k}": v for k, v in oos.items()},
                    "efficiency": efficiency(oos["annual_return"], is_["annual_return"]),
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        return summarise(self.windows, self.in_sample, self.out_of_sample)

    def stability(self) -> pd.DataFrame:
        return parameter_stability(self.params)


def run_walk_forward(windows: Sequence[Window], optimise: Optimise, backtest: Backtest, log=None) -> WalkForwardResult:
    """For each window: ``optimise(train timerange)`` picks the parameters in sample, ``backtest(params,
    train timerange)`` gives their in-sample figures and ``backtest(params, test timerange)`` the
    out-of-sample ones. Timeranges are Freqtrade's ``YYYYMMDD-YYYYMMDD``. ``log`` (a logger) hears of
    each window's choice."""
    params, in_sample, out_of_sample = [], [], []
    for window in windows:
        chosen = optimise(window.train_timerange)
        if not isinstance(chosen, dict):
            raise WalkForwardError(
                f"window {window.index} ({window.train_timerange}): the search returned "
                f"{type(chosen).__name__}, not a dict of parameters"
            )
        if log is not None:
            log.info(f"walk-forward window {window.index}: train {window.train_timerange} chose {chosen}")
        params.append(dict(chosen))
        in_sample.append(backtest(dict(chosen), window.train_timerange))
        out_of_sample.append(backtest(dict(chosen), window.test_timerange))
    return WalkForwardResult(list(windows), params, in_sample, out_of_sample)


class GridSearch:
    """The built-in in-sample search: every point of an explicit grid backtested on the train span,
    the best by ``objective`` among those with at least ``min_trades`` trades. ``optimise`` and
    ``backtest`` are the two callables ``run_walk_forward`` takes; the outcomes of the last train span
    are kept, so the in-sample backtest of the chosen point costs nothing more."""

    def __init__(self, grid: Mapping[str, Sequence[Any]], objective: str, min_trades: int, backtest: Backtest):
        if objective not in OBJECTIVES:
            raise WalkForwardError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
        if min_trades < 0:
            raise WalkForwardError(f"min_trades must be 0 or more, got {min_trades}")
        self.points = expand_grid(grid)
        self.objective, self.min_trades = objective, min_trades
        self._backtest = backtest
        self._kept: tuple[str, dict[str, WindowOutcome]] = ("", {})
        self.backtests = 0
        self.trials: list[dict[str, Any]] = []
        """Every grid point tried: train timerange, params, objective value, trades."""

    @staticmethod
    def _key(params: Mapping[str, Any]) -> str:
        return repr(sorted(params.items()))

    def backtest(self, params: dict[str, Any], timerange: str) -> WindowOutcome:
        kept_range, kept = self._kept
        if timerange == kept_range and self._key(params) in kept:
            return kept[self._key(params)]
        self.backtests += 1
        return self._backtest(params, timerange)

    def optimise(self, timerange: str) -> dict[str, Any]:
        outcomes = {self._key(p): self.backtest(dict(p), timerange) for p in self.points}
        self._kept = (timerange, outcomes)
        trials = [(p, outcomes[self._key(p)].stats) for p in self.points]
        self.trials += [
            {
                "train": timerange,
                "params": dict(p),
                self.objective: objective_value(stats, self.objective),
                "trades": int(stats.get("total_trades") or 0),
            }
            for p, stats in trials
        ]
        return best_trial(trials, self.objective, self.min_trades, f"train span {timerange}")


# Stitching ----------------------------------------------------------------------------------------


def stitch_trades(outcomes: Sequence[WindowOutcome]) -> pd.DataFrame:
    """The out-of-sample trades of every window, in window order, with the window's index first."""
    parts = [o.trades.assign(window=i) for i, o in enumerate(outcomes)]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"window": []})
    frame["window"] = frame["window"].astype("int64")
    return frame[["window"] + [c for c in frame.columns if c != "window"]]


def _balances(outcome: WindowOutcome) -> tuple[float, float]:
    start = float(outcome.stats["starting_balance"])
    end = float(outcome.stats.get("final_balance", start + float(outcome.stats.get("profit_total_abs") or 0.0)))
    return start, end


def stitch_equity(outcomes: Sequence[WindowOutcome]) -> pd.DataFrame:
    """One out-of-sample equity curve (columns ``equity`` and ``window``): each window's curve shifted
    so that it starts from the previous window's end balance (additive; see the module docstring)."""
    parts, offset = [], 0.0
    for index, outcome in enumerate(outcomes):
        start, end = _balances(outcome)
        part = outcome.equity[["equity"]].astype("float64") + offset
        parts.append(part.assign(window=index))
        offset += end - start
    if not parts:
        return pd.DataFrame({"equity": [], "window": []}, index=pd.DatetimeIndex([], tz="UTC", name="date"))
    frame = pd.concat(parts)
    frame["window"] = frame["window"].astype("int64")
    return frame


def summarise(
    windows: Sequence[Window], in_sample: Sequence[WindowOutcome], out_of_sample: Sequence[WindowOutcome]
) -> dict[str, Any]:
    """In-sample figures (means over windows: in-sample spans overlap, so they are not added up) beside
    the stitched out-of-sample ones, and the walk-forward efficiency of the whole run.

    Out of sample: profit over the first window's starting balance, the annualised return over the
    test days, and Freqtrade's own trade-based Sharpe, Sortino and Calmar of the stitched trades over
    the first test start to the last test end."""
    from freqtrade.data.metrics import calculate_calmar, calculate_sharpe, calculate_sortino

    figures_is = [_figures(o.stats, w.train_days) for w, o in zip(windows, in_sample, strict=True)]
    trades = stitch_trades(out_of_sample)
    initial = _balances(out_of_sample[0])[0]
    profit_abs = sum(_balances(o)[1] - _balances(o)[0] for o in out_of_sample)
    test_days = sum(w.test_days for w in windows)
    first, last = windows[0].test_start.to_pydatetime(), windows[-1].test_end.to_pydatetime()
    oos_annual = annualised_return(profit_abs / initial, test_days)
    is_annual = sum(f["annual_return"] for f in figures_is) / len(figures_is)

    def mean(key: str) -> float:
        return sum(f[key] for f in figures_is) / len(figures_is)

    return {
        "windows": len(windows),
        "is_profit": mean("profit"),
        "is_annual_return": is_annual,
        "is_sharpe": mean("sharpe"),
        "is_trades": mean("trades"),
        "oos_profit": profit_abs / initial,
        "oos_profit_abs": profit_abs,
        "oos_annual_return": oos_annual,
        "oos_sharpe": float(calculate_sharpe(trades, first, last, initial)),
        "oos_sortino": float(calculate_sortino(trades, first, last, initial)),
        "oos_calmar": float(calculate_calmar(trades, first, last, initial)),
        "oos_trades": len(trades),
        "oos_days": test_days,
        "efficiency": efficiency(oos_annual, is_annual),
    }


# Parameter stability ------------------------------------------------------------------------------


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parameter_stability(chosen: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per parameter: the value chosen in each window, how many times it changed from one window to
    the next, how many distinct values, and for numbers the mean, population standard deviation and
    coefficient of variation (std / |mean|); NaN where the mean is 0 or the values are not all numbers."""
    names = list(dict.fromkeys(name for params in chosen for name in params))
    rows = []
    for name in names:
        values = [params.get(name) for params in chosen]
        changes = sum(1 for a, b in itertools.pairwise(values) if a != b)
        row: dict[str, Any] = {
            "parameter": name,
            "values": values,
            "changes": changes,
            "distinct": len({repr(v) for v in values}),
            "mean": math.nan,
            "std": math.nan,
            "cv": math.nan,
        }
        if values and all(_numeric(v) for v in values):
            series = pd.Series(values, dtype="float64")
            mean, std = float(series.mean()), float(series.std(ddof=0))
            row.update(mean=mean, std=std, cv=math.nan if mean == 0 else std / abs(mean))
        rows.append(row)
    return pd.DataFrame(rows, columns=["parameter", "values", "changes", "distinct", "mean", "std", "cv"])
