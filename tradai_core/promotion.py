"""Champion and challenger: should the challenger model take over? Decided on per-trade returns.

The rule (docs/models.md):

1. Each side needs at least ``min_trades`` trades; otherwise the outcome is *inconclusive* (more data is
   needed), whatever the numbers say.
2. Welch's t-test, one-sided: the challenger's mean per-trade return is greater than the champion's,
   ``scipy.stats.ttest_ind(challenger, champion, equal_var=False, alternative="greater")``, p < ``alpha``.
   The mean is what a strategy earns per trade, and Welch's test does not assume both models trade with
   the same volatility. A rank test (Mann-Whitney) would call a challenger with many small wins and
   rare large losses "better" even when it earns less on average.
3. The challenger's maximum drawdown (compounded over its trades, in order) may exceed the champion's by
   at most ``drawdown_tolerance`` (an absolute fraction: 0.02 allows 12% against 10%).

Both 2 and 3 hold: *promote*. Otherwise: *keep* the champion, with every failed criterion as a reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

Outcome = Literal["promote", "keep", "inconclusive"]
TEST_NAME = "welch_t_one_sided_greater"


@dataclass(frozen=True)
class PromotionPolicy:
    min_trades: int = 30
    alpha: float = 0.05
    drawdown_tolerance: float = 0.02

    def __post_init__(self):
        if self.min_trades < 2:
            raise ValueError(f"min_trades must be at least 2 (a t-test needs a variance), got {self.min_trades}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        if not self.drawdown_tolerance >= 0:
            raise ValueError(f"drawdown_tolerance must be >= 0, got {self.drawdown_tolerance}")


@dataclass(frozen=True)
class TradeMetrics:
    trades: int
    mean_return: float
    std_return: float
    total_return: float  # compounded over the trades in order
    max_drawdown: float  # largest fall from a peak of the compounded equity, as a fraction of the peak
    win_rate: float


@dataclass(frozen=True)
class PromotionDecision:
    outcome: Outcome
    p_value: float | None  # None when a side has fewer than two trades or both sides are constant
    champion: TradeMetrics
    challenger: TradeMetrics
    reasons: tuple[str, ...]
    policy: PromotionPolicy
    test: str = TEST_NAME

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["reasons"] = list(self.reasons)
        return record


def _returns(values, side: str) -> np.ndarray:
    returns = np.asarray(values, dtype="float64")
    if returns.ndim != 1:
        raise ValueError(f"{side} per-trade returns must be one-dimensional, got shape {returns.shape}")
    bad = np.flatnonzero(~np.isfinite(returns))
    if bad.size:
        raise ValueError(f"{side} per-trade returns have {bad.size} NaN or infinite value(s), first at trade {bad[0]}")
    ruin = np.flatnonzero(returns <= -1)
    if ruin.size:
        raise ValueError(
            f"{side} per-trade return {returns[ruin[0]]} at trade {ruin[0]} loses the whole stake or more; "
            "returns are fractions of the stake (-0.05 is a 5% loss)"
        )
    return returns


def max_drawdown(returns: np.ndarray) -> float:
    """Largest fall of the compounded equity from its running peak (the start, 1.0, counts as a peak)."""
    equity = np.cumprod(1 + np.concatenate([[0.0], returns]))
    peaks = np.maximum.accumulate(equity)
    return float(np.max(1 - equity / peaks))


def trade_metrics(returns: np.ndarray) -> TradeMetrics:
    count = len(returns)
    return TradeMetrics(
        trades=count,
        mean_return=float(returns.mean()) if count else 0.0,
        std_return=float(returns.std(ddof=1)) if count > 1 else 0.0,
        total_return=float(np.prod(1 + returns) - 1),
        max_drawdown=max_drawdown(returns),
        win_rate=float((returns > 0).mean()) if count else 0.0,
    )


def decide(champion_returns, challenger_returns, policy: PromotionPolicy | None = None) -> PromotionDecision:
    """Promote, keep or inconclusive, with both sides' metrics, the p-value and the reasons."""
    policy = policy or PromotionPolicy()
    champion_r = _returns(champion_returns, "champion")
    challenger_r = _returns(challenger_returns, "challenger")
    champion, challenger = trade_metrics(champion_r), trade_metrics(challenger_r)

    p_value = None
    if len(champion_r) >= 2 and len(challenger_r) >= 2:
        if np.ptp(champion_r) > 0 or np.ptp(challenger_r) > 0:
            result = stats.ttest_ind(challenger_r, champion_r, equal_var=False, alternative="greater")
            p_value = float(result.pvalue)

    short = [f"{side} has {m.trades} trades, fewer than {policy.min_trades}"
             for side, m in (("champion", champion), ("challenger", challenger)) if m.trades < policy.min_trades]
    if short:
        return PromotionDecision("inconclusive", p_value, champion, challenger, tuple(short), policy)

    reasons = []
    if p_value is None:
        # Both sides constant: the t statistic is undefined, so nothing shows the challenger is better.
        reasons.append("both sides' returns are constant: the test is undefined")
    elif p_value >= policy.alpha:
        reasons.append(
            f"challenger's mean return {challenger.mean_return:.6g} is not significantly greater than the "
            f"champion's {champion.mean_return:.6g} (p = {p_value:.4g} >= {policy.alpha})"
        )
    if challenger.max_drawdown > champion.max_drawdown + policy.drawdown_tolerance:
        reasons.append(
            f"challenger's max drawdown {challenger.max_drawdown:.2%} exceeds the champion's "
            f"{champion.max_drawdown:.2%} by more than {policy.drawdown_tolerance:.2%}"
        )
    if reasons:
        return PromotionDecision("keep", p_value, champion, challenger, tuple(reasons), policy)
    return PromotionDecision(
        "promote", p_value, champion, challenger,
        (f"challenger's mean return {challenger.mean_return:.6g} > champion's {champion.mean_return:.6g} "
         f"(p = {p_value:.4g} < {policy.alpha}); drawdown {challenger.max_drawdown:.2%} within "
         f"{policy.drawdown_tolerance:.2%} of {champion.max_drawdown:.2%}",),
        policy,
    )


def combine(holdout: Outcome, shadow: Outcome) -> Outcome:
    """The outcome of a challenger judged on the holdout backtest and on its shadow's dry-run trades:
    either *keep* keeps the champion, else either *inconclusive* needs more data; *promote* needs both."""
    for outcome in ("keep", "inconclusive"):
        if outcome in (holdout, shadow):
            return outcome  # type: ignore[return-value]
    return "promote"
