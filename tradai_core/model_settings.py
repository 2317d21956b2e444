"""The settings of a model strategy (its literal ``model_settings`` dict), with defaults and checks.

Kept apart from ``tradai_core.model_strategy`` so that the code location can read them without importing
Freqtrade; ``tradai_core.model_strategy`` re-exports ``ModelSettings``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class ModelSettingsError(ValueError):
    """A model strategy's ``model_settings`` with an unknown key or a bad value; the message names both."""


@dataclass(frozen=True)
class ModelSettings:
    label_horizon: int = 12
    """Candles ahead that the label looks (e.g. the sign of the return over the next 12 candles)."""
    folds: int = 4
    """Walk-forward validation folds (expanding window, split on time across all pairs)."""
    purge: int | None = None
    """Candles dropped between each fold's training rows and its validation rows; at least
    ``label_horizon`` (the default), so no training label overlaps the validation period."""
    seed: int = 42
    """Seed handed to the strategy's ``estimator(seed)`` and to the permutation importances."""
    holdout_days: float = 7.0
    """The newest days of stored candles, kept out of training: champion and challenger are
    backtested on them."""
    train_days: float | None = None
    """Days of candles before the holdout to train on; every stored candle when None."""
    min_rows: int = 2000
    """Fewest training rows (after warm-up and unlabelled rows are dropped) a training accepts."""
    drift_window_days: float = 7.0
    """Days of recent candles the drift check compares with the training window."""
    retrain_cron: str = "0 3 * * 0"
    """When the scheduled retraining runs (cron, UTC); weekly on Sunday 03:00 by default."""
    min_trades: int = 30
    """Promotion: fewest holdout trades each model needs, else the evaluation is inconclusive."""
    alpha: float = 0.05
    """Promotion: the one-sided test's significance level (the challenger's mean return greater)."""
    drawdown_tolerance: float = 0.02
    """Promotion: how much worse (absolute) the challenger's max drawdown may be than the champion's."""
    shadow_days: int = 0
    """Promotion: days a new challenger trades as a dry-run shadow bot beside the champion's bot before
    the decision (which then needs both the holdout and the shadow); 0: no shadow."""
    shadow_min_trades: int = 0
    """Promotion: a shadow ends early once it and the champion's bot each closed this many trades, and
    its comparison needs that many (``min_trades`` when 0); needs ``shadow_days`` > 0 as the longest run."""

    @property
    def purge_candles(self) -> int:
        return self.label_horizon if self.purge is None else self.purge

    @classmethod
    def from_spec(cls, values: dict[str, Any] | None, owner: str = "model_settings") -> ModelSettings:
        """Defaults overridden by ``values``; unknown keys and bad values are refused, naming them."""
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ModelSettingsError(f"{owner}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
        problems = []

        def integer(name: str, minimum: int) -> None:
            value = values.get(name)
            if name in values and value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
                problems.append(f"{name} must be an integer >= {minimum}, got {value!r}")

        def number(name: str, minimum: float, allow_none: bool = False) -> None:
            if name not in values:
                return
            value = values[name]
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > minimum:
                problems.append(f"{name} must be a number > {minimum}, got {value!r}")

        integer("label_horizon", 1)
        integer("folds", 2)
        integer("seed", 0)
        integer("min_rows", 1)
        if values.get("purge") is not None:
            integer("purge", 0)
        number("holdout_days", 0)
        number("train_days", 0, allow_none=True)
        number("drift_window_days", 0)
        integer("min_trades", 2)
        if "alpha" in values and not (isinstance(values["alpha"], int | float) and not isinstance(values["alpha"], bool)
                                      and 0 < values["alpha"] < 1):
            problems.append(f"alpha must be a number between 0 and 1, got {values['alpha']!r}")
        if "drawdown_tolerance" in values and not (
            isinstance(values["drawdown_tolerance"], int | float) and not isinstance(values["drawdown_tolerance"], bool)
            and 0 <= values["drawdown_tolerance"] < 1
        ):
            problems.append(f"drawdown_tolerance must be a number in [0, 1), got {values['drawdown_tolerance']!r}")
        for name, unit in (("shadow_days", "days"), ("shadow_min_trades", "trades")):
            value = values.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{name} must be a whole number of {unit} >= 0, got {value!r}")
        if values.get("shadow_min_trades") == 1:
            problems.append("shadow_min_trades must be 0 (min_trades) or at least 2 (a t-test needs a variance), got 1")
        shadow_days = values.get("shadow_days", 0)
        if values.get("shadow_min_trades") and isinstance(shadow_days, int) and shadow_days == 0:
            problems.append("shadow_min_trades needs shadow_days > 0 (the longest a shadow runs), got shadow_days 0")
        for name in ("label_horizon", "folds", "seed", "min_rows", "min_trades"):
            if name in values and values[name] is None:
                problems.append(f"{name} must be an integer, got None")
        if "retrain_cron" in values:
            cron = values["retrain_cron"]
            if not isinstance(cron, str) or len(cron.split()) != 5:
                problems.append(f"retrain_cron must be a cron string of five fields, got {cron!r}")
        if problems:
            raise ModelSettingsError(f"{owner}: " + "; ".join(problems))
        settings = cls(**{k: (float(v) if fields[k].type in ("float", "float | None") and v is not None else v) for k, v in values.items()})
        if settings.purge_candles < settings.label_horizon:
            raise ModelSettingsError(
                f"{owner}: purge ({settings.purge_candles} candles) must be at least label_horizon "
                f"({settings.label_horizon}): a shorter gap lets training labels see the validation period"
            )
        return settings

    def to_params(self) -> dict[str, str]:
        """The settings as MLflow params (``purge`` resolved)."""
        out = {f"model.{k}": str(v) for k, v in dataclasses.asdict(self).items()}
        out["model.purge"] = str(self.purge_candles)
        return out
