"""The lifecycle of model strategies around their training asset: retraining jobs and schedules, the
champion/challenger evaluation, and the demo that shifts the market so that drift shows.

- ``train_<Name>``: materialises ``strategies/<Name>/model``; run by a schedule per model (weekly by
  default, ``retrain_cron`` in the strategy's ``model_settings``), by the drift sensor, and by hand.
- ``evaluate_challenger`` (config: ``model``, ``trigger``): backtests the champion and the challenger on
  the same holdout window (the last ``holdout_days`` of stored candles) with the same candle versions and
  markets snapshot, decides on their per-trade returns (``tradai_core.promotion.decide``), records the
  decision in the registry's audit log (a promotion moves the aliases) and notifies.
- ``demo_market_shift`` / ``demo_market_restore``: append a few days of synthetic candles with another
  distribution after the last stored candle of a model's pairs, and take them away again.

See docs/models.md.
"""


import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from resources import aws_contract
from resources.arctic import ArcticStore
from resources.freqtrade_runner import FreqtradeRunner
from resources.mlflow_tracker import MlflowTracker
from resources.model_registry import (
    CHALLENGER,
    CHAMPION,
    ModelRegistry,
    ModelRegistryError,
)
from resources.notifier import Notifier
from tradai_assets.market_data import content_hash
from tradai_assets.strategies import _run_backtest
from tradai_core import model_data
from tradai_core.candles import (
    parse_candle_symbol,
    timeframe_delta,
)
from tradai_core.keys import EVALUATE_JOB, EVALUATE_OP, model_key, train_job_name
from tradai_core.model_data import ModelInputError, ModelMarket, market_of, model_specs
from tradai_core.model_settings import ModelSettings
from tradai_core.promotion import PromotionPolicy, combine, decide
from tradai_core.shadow import shadow_state
from tradai_core.strategy_config import (
    BASE_CONFIG_PATH,
    ConfigError,
    deep_merge,
    load_base_config,
    market_type,
)
from tradai_core.strategy_discovery import StrategySpec

DEFAULT_RETRAIN_CRON = ModelSettings().retrain_cron  # weekly
DEFAULT_MIN_TRADES = 30
DEMO_SHIFT_JOB = "demo_market_shift"
DEMO_RESTORE_JOB = "demo_market_restore"
# Written into the metadata of a candle series that holds synthetic demo candles (see demo_market_shift).
DEMO_METADATA_KEY = "tradai_demo_shift"


# Settings ------------------------------------------------------------------------------------------


def model_settings(spec: StrategySpec) -> ModelSettings:
    try:
        return model_data.model_settings(spec)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from exc


def _setting(settings: Any, spec: StrategySpec, key: str, default: Any) -> Any:
    """A lifecycle setting from the validated settings, else the literal dict, else its default."""
    value = getattr(settings, key, None)
    if value is None:
        value = (spec.model_settings or {}).get(key)
    return default if value is None else value


def retrain_cron(spec: StrategySpec) -> str:
    """From the literal ``model_settings`` (read without importing the strategy); the default when they
    are invalid (the training run then fails with the reason)."""
    try:
        return ModelSettings.from_spec(spec.model_settings or {}).retrain_cron
    except ValueError:
        return DEFAULT_RETRAIN_CRON


def promotion_policy(spec: StrategySpec, settings: Any) -> PromotionPolicy:
    return PromotionPolicy(
        min_trades=int(_setting(settings, spec, "min_trades", DEFAULT_MIN_TRADES)),
        alpha=float(_setting(settings, spec, "alpha", 0.05)),
        drawdown_tolerance=float(_setting(settings, spec, "drawdown_tolerance", 0.02)),
    )


def strategy_config(spec: StrategySpec, base_path: Path = BASE_CONFIG_PATH) -> dict[str, Any]:
    try:
        return model_data.strategy_config(spec, base_path)
    except ConfigError as exc:
        raise dg.Failure(description=str(exc)) from exc


def _declared_market(spec: StrategySpec, base_path: Path) -> tuple[str, str]:
    """Exchange and market type without validating the config (no Freqtrade import at load time)."""
    config = deep_merge(load_base_config(base_path), spec.config_overrides)
    return config["exchange"]["name"], market_type(config)


def stored_end(arctic: ArcticStore, market: ModelMarket) -> pd.Timestamp:
    try:
        return model_data.stored_end(arctic, market)
    except ModelInputError as exc:
        raise dg.Failure(description=str(exc)) from exc


def holdout_timerange(end: pd.Timestamp, days: int) -> str:
    """Freqtrade's timerange of the last ``days`` days before ``end`` (whole UTC days)."""
    start = (end - pd.Timedelta(days=days)).floor("D")
    return f"{start:%Y%m%d}-{end.ceil('D'):%Y%m%d}"


def pin_inputs(arctic: ArcticStore, market: ModelMarket) -> tuple[str, dict[str, int]]:
    """The newest markets snapshot and candle versions of the market's pairs, pinned once for both sides."""
    snapshot = arctic.latest_markets_snapshot(market.exchange, market.market_type)
    if snapshot is None:
        raise dg.Failure(
            description=f"no markets snapshot for {market.exchange} {market.market_type}: "
            f"materialise markets/{market.exchange}/{market.market_type} first"
        )
    pairs = set(market.pairs)
    versions = {
        symbol: arctic.candle_version(market.exchange, market.market_type, symbol)
        for symbol in arctic.candle_symbols(market.exchange, market.market_type)
        if parse_candle_symbol(symbol)[0] in pairs
    }
    return snapshot.content_hash, {s: int(v) for s, v in versions.items() if v is not None}


def per_trade_returns(trades: pd.DataFrame) -> np.ndarray:
    """Freqtrade's ``profit_ratio`` of every trade, in the order the trades closed."""
    if trades.empty:
        return np.array([], dtype="float64")
    ordered = trades.sort_values(["close_date", "open_date", "pair"], kind="stable") if "close_date" in trades else trades
    return ordered["profit_ratio"].to_numpy(dtype="float64")


# Training jobs and schedules -----------------------------------------------------------------------

# Definitions must see one object per job name: the lifecycle's jobs and the sensors' targets are the same.
_JOBS: dict[Any, Any] = {}


def train_job(name: str) -> UnresolvedAssetJobDefinition:
    key = ("train", name)
    if key not in _JOBS:
        _JOBS[key] = dg.define_asset_job(
            train_job_name(name),
            # The drift check runs on its own schedule: a retraining does not wait on it.
            selection=dg.AssetSelection.assets(model_key(name)).without_checks(),
            description=f"Retrain {name}: materialise {model_key(name).to_user_string()} (a new version, "
            "the challenger, or the champion when there is none).",
            tags=aws_contract.ecs_run_tags("training"),
        )
    return _JOBS[key]


def train_jobs(specs: list[StrategySpec]) -> list[UnresolvedAssetJobDefinition]:
    """The ``train_<Name>`` job of every model strategy (the drift sensor's targets)."""
    return [train_job(s.name) for s in model_specs(specs)]


def train_schedule(spec: StrategySpec) -> dg.ScheduleDefinition:
    cron = retrain_cron(spec)
    return dg.ScheduleDefinition(
        name=f"train_{spec.name}_schedule",
        cron_schedule=cron,
        job=train_job(spec.name),
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Retrains {spec.name} on schedule ({cron} UTC; model_settings retrain_cron).",
    )


# Champion and challenger ---------------------------------------------------------------------------


class EvaluateChallengerConfig(dg.Config):
    model: str
    """The model strategy (its class name, also its registered model name)."""
    trigger: str = "manual"
    """What asked for the evaluation (recorded in the audit log): a sensor, a person."""


@dataclass
class SideResult:
    """One side of an evaluation: a model version and its per-trade returns on the holdout."""

    version: int
    returns: np.ndarray
    run_id: str = ""
    run_url: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


def _backtest_version(
    context, spec: StrategySpec, config: dict[str, Any], version: int, registry: ModelRegistry, side: str,
    arctic: ArcticStore, runner: FreqtradeRunner, mlflow: MlflowTracker, markets_hash: str, data_versions: dict[str, int],
) -> SideResult:
    engine_config = {
        **config,
        "tradai_model": {"name": spec.name, "version": int(version), "tracking_uri": registry.tracking_uri},
    }
    recorded = _run_backtest(
        context, spec, engine_config, content_hash(engine_config), arctic, runner, mlflow, f"evaluate-{side}",
        markets_hash=markets_hash, data_versions=data_versions,
    )
    return SideResult(version, per_trade_returns(recorded.outcome.trades), recorded.run_id, recorded.run_url, recorded.metrics)


def _side_table(decision: dict[str, Any], sides: dict[str, SideResult]) -> dg.TableMetadataValue:
    fields = ("trades", "mean_return", "std_return", "total_return", "max_drawdown", "win_rate")
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({"side": side, "version": sides[side].version, **{f: decision[side][f] for f in fields}})
            for side in ("champion", "challenger")
        ],
        schema=dg.TableSchema(
            columns=[dg.TableColumn("side", "string"), dg.TableColumn("version", "int")]
            + [dg.TableColumn(f, "int" if f == "trades" else "float") for f in fields]
        ),
    )


def conclude(
    name: str, live: bool, champion: SideResult, challenger: SideResult, policy: PromotionPolicy, trigger: str,
    registry: ModelRegistry, notifier: Notifier, lineage: dict[str, Any] | None = None,
    shadow: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], pd.Series]:
    """Decide on both sides' per-trade returns, record the decision (a promotion moves the aliases; the
    hot-swap of a live bot follows the champion move in the audit log) and notify; the record and the
    audit-log row. ``shadow``: the result of the challenger's finished shadow (``tradai_assets.model_shadow``);
    the outcome then needs both (``tradai_core.promotion.combine``)."""
    decision = decide(champion.returns, challenger.returns, policy)
    holdout_outcome = decision.outcome
    if shadow is not None:
        shadow_decision = shadow["decision"]
        decision = dataclasses.replace(
            decision, outcome=combine(decision.outcome, shadow_decision["outcome"]),
            reasons=tuple(f"holdout: {r}" for r in decision.reasons)
            + tuple(f"shadow ({shadow['trades']['shadow']} against {shadow['trades']['champion']} trades of the "
                    f"champion's bot): {r}" for r in shadow_decision["reasons"]),
        )
    # The aliases may have moved while the backtests ran (a newer challenger, a rollback): the decision
    # is about the versions evaluated and must not be applied to others.
    now = registry.aliases(name)
    if now.get(CHAMPION) != champion.version or now.get(CHALLENGER) != challenger.version:
        raise dg.Failure(
            description=f"{name}: the aliases moved during the evaluation (champion v{champion.version} -> "
            f"{now.get(CHAMPION)}, challenger v{challenger.version} -> {now.get(CHALLENGER)}); nothing recorded. "
            "The challenger sensor evaluates the new challenger."
        )
    record = {
        **decision.to_dict(),
        "model": name,
        "champion_version": champion.version,
        "challenger_version": challenger.version,
        **(lineage or {}),
    }
    if shadow is not None:
        record.update(holdout_outcome=holdout_outcome, shadow=shadow)
    row = registry.record_decision(name, record, trigger=trigger)

    outcome = decision.outcome
    p_text = "n/a" if decision.p_value is None else f"{decision.p_value:.4g}"
    headline = {
        "promote": f"{name}: challenger v{challenger.version} promoted to champion (was v{champion.version})",
        "keep": f"{name}: champion v{champion.version} kept over challenger v{challenger.version}",
        "inconclusive": f"{name}: champion v{champion.version} vs challenger v{challenger.version} inconclusive "
        "(more data needed)",
    }[outcome]
    holdout = (lineage or {}).get("holdout", {}).get("timerange")
    message = (
        (f"Holdout {holdout}: " if holdout else "")
        + f"champion {decision.champion.trades} trades, mean return {decision.champion.mean_return:.4%}; "
        f"challenger {decision.challenger.trades} trades, mean return {decision.challenger.mean_return:.4%}; "
        f"p = {p_text}.\n" + "\n".join(decision.reasons)
    )
    if outcome == "promote" and live:
        message += f"\n{name} trades live: its bot is redeployed with v{challenger.version} (hot swap on the champion move)."
    notifier.notify(
        "promotion" if outcome == "promote" else f"evaluation_{outcome}", headline, message,
        severity="warning" if outcome == "promote" else "info",
        details={"p_value": decision.p_value, "champion": record["champion"], "challenger": record["challenger"],
                 "trigger": trigger},
    )
    return record, row


def evaluate(
    context, spec: StrategySpec, base_path: Path, trigger: str, arctic: ArcticStore, runner: FreqtradeRunner,
    mlflow: MlflowTracker, registry: ModelRegistry, notifier: Notifier,
) -> dict[str, Any]:
    """Backtest champion and challenger on the same pinned inputs, decide, record, notify; the record."""
    name = spec.name
    settings = model_settings(spec)
    try:
        champion = registry.version(name, CHAMPION)
        challenger = registry.version(name, CHALLENGER)
    except ModelRegistryError as exc:
        raise dg.Failure(description=f"{name}: cannot evaluate: {exc}") from exc
    if champion == challenger:
        raise dg.Failure(description=f"{name}: champion and challenger are both version {champion}")

    shadow = None
    if settings.shadow_days > 0:
        state = shadow_state(registry.audit_log(name), challenger)
        if state.status != "finished":
            raise dg.Failure(description=f"{name}: shadow evaluation is on (shadow_days {settings.shadow_days}) and "
                             f"the shadow of challenger v{challenger} is {state.status}"
                             + (f" ({state.reason})" if state.reason else "") + "; no decision without it")
        shadow = state.result
    config = strategy_config(spec, base_path)
    market = market_of(config)
    holdout_days = float(settings.holdout_days)
    timerange = holdout_timerange(stored_end(arctic, market), holdout_days)
    markets_hash, data_versions = pin_inputs(arctic, market)
    config = {**config, "timerange": timerange}
    context.log.info(
        f"{name}: champion v{champion} against challenger v{challenger} on {timerange} "
        f"(markets {markets_hash[:12]}, {len(data_versions)} candle series pinned)"
    )
    sides = {
        side: _backtest_version(context, spec, config, version, registry, side, arctic, runner, mlflow, markets_hash, data_versions)
        for side, version in (("champion", champion), ("challenger", challenger))
    }
    lineage = {
        "holdout": {"timerange": timerange, "days": holdout_days},
        "markets_snapshot_hash": markets_hash,
        "data_versions": data_versions,
        "backtests": {side: {"mlflow_run_id": r.run_id, "metrics": r.metrics} for side, r in sides.items()},
        "dagster_run_id": context.run.run_id,
    }
    record, row = conclude(
        name, spec.live, sides["champion"], sides["challenger"], promotion_policy(spec, settings), trigger,
        registry, notifier, lineage, shadow,
    )
    outcome = record["outcome"]
    context.add_output_metadata({
        "outcome": outcome,
        "p_value": dg.MetadataValue.float(float("nan") if record["p_value"] is None else record["p_value"]),
        "champion_version": champion,
        "challenger_version": challenger,
        "champion_after": int(row["champion_after"]),
        "sides": _side_table(record, sides),
        "reasons": dg.MetadataValue.json(record["reasons"]),
        "policy": dg.MetadataValue.json(record["policy"]),
        "holdout_timerange": timerange,
        "markets_snapshot_hash": markets_hash,
        "data_versions": dg.MetadataValue.json(data_versions),
        "champion_backtest": dg.MetadataValue.url(sides["champion"].run_url),
        "challenger_backtest": dg.MetadataValue.url(sides["challenger"].run_url),
        **({"holdout_outcome": record["holdout_outcome"], "shadow": dg.MetadataValue.json(shadow)} if shadow else {}),
        "trigger": trigger,
    })
    return record


def _known_model(specs: dict[str, StrategySpec], name: str | None) -> StrategySpec:
    if not specs:
        raise dg.Failure(description="there is no model strategy (a class deriving from ModelStrategy) in strategies/")
    if name is None:
        return next(iter(specs.values()))
    spec = specs.get(name)
    if spec is None:
        raise dg.Failure(description=f"unknown model strategy {name!r}; known: {', '.join(sorted(specs))}")
    if spec.problem:
        raise dg.Failure(description=spec.problem)
    return spec


def evaluate_job(specs: list[StrategySpec], base_path: Path = BASE_CONFIG_PATH) -> dg.JobDefinition:
    by_name = {s.name: s for s in model_specs(specs)}
    key = ("evaluate", tuple((s.name, str(s.file)) for s in by_name.values()), str(base_path))
    if key in _JOBS:
        return _JOBS[key]

    @dg.op(name=EVALUATE_OP, description="Backtest champion and challenger on the same holdout, decide, record, notify.")
    def evaluate_op(
        context: dg.OpExecutionContext,
        config: EvaluateChallengerConfig,
        arctic: ArcticStore,
        freqtrade_runner: FreqtradeRunner,
        mlflow: MlflowTracker,
        model_registry: ModelRegistry,
        notifier: Notifier,
    ):
        spec = _known_model(by_name, config.model)
        record = evaluate(context, spec, base_path, config.trigger, arctic, freqtrade_runner, mlflow, model_registry, notifier)
        return record["outcome"]

    @dg.job(
        name=EVALUATE_JOB,
        description="Champion against challenger of one model on the same recent holdout window, candle versions "
        "and markets snapshot; the decision (promote, keep, inconclusive) goes to the audit log and the notifier.",
        tags=aws_contract.ecs_run_tags("backtest"),
    )
    def job():
        evaluate_op()

    _JOBS[key] = job
    return job


# The demo: a market that changes --------------------------------------------------------------------


class DemoMarketShiftConfig(dg.Config):
    model: str | None = None
    """The model strategy whose pairs get the synthetic candles (the first model strategy when unset)."""
    days: int = 4
    """How many days of candles to append after the last stored candle."""
    volatility_factor: float = 4.0
    """Per-candle volatility of the new candles relative to the last two stored days."""
    trend_per_day: float = 0.03
    """Drift of the log price per day (0.03: about +3% a day)."""
    seed: int = 7


class DemoMarketRestoreConfig(dg.Config):
    model: str | None = None
    """The model strategy whose pairs lose their synthetic candles (the first model strategy when unset)."""


def synthetic_shift(recent: pd.DataFrame, step: pd.Timedelta, periods: int, volatility_factor: float,
                    trend_per_day: float, rng: np.random.Generator) -> pd.DataFrame:
    """Candles after ``recent``: a random walk from its last close with ``volatility_factor`` times its
    per-candle volatility and a trend; ranges and volumes scaled alike. Valid OHLC, float64."""
    log_close = np.log(recent["close"].to_numpy(dtype="float64"))
    sigma = float(np.std(np.diff(log_close))) or 1e-3
    spread = float(np.median((recent["high"] - recent["low"]) / recent["close"])) or 1e-3
    per_candle = trend_per_day * step / pd.Timedelta(days=1)
    steps = rng.normal(per_candle, sigma * volatility_factor, periods)
    close = float(recent["close"].iloc[-1]) * np.exp(np.cumsum(steps))
    open_ = np.concatenate([[float(recent["close"].iloc[-1])], close[:-1]])
    wick = np.abs(rng.normal(0, spread * volatility_factor / 2, (2, periods)))
    volume = float(recent["volume"].median()) * volatility_factor * rng.uniform(0.5, 1.5, periods)
    index = pd.date_range(recent.index[-1] + step, periods=periods, freq=step, name=recent.index.name or "date")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wick[0]),
            "low": np.minimum(open_, close) * (1 - wick[1]),
            "close": close,
            "volume": volume,
        },
        index=index,
    ).astype("float64")


def shift_market(arctic: ArcticStore, market: ModelMarket, config: DemoMarketShiftConfig) -> list[dict[str, Any]]:
    """Append synthetic candles to every pair of the market; existing candles are never touched."""
    if config.days < 1 or config.volatility_factor <= 0:
        raise dg.Failure(description="days must be >= 1 and volatility_factor > 0")
    step = timeframe_delta(market.timeframe)
    periods = int(pd.Timedelta(days=config.days) / step)
    rng = np.random.default_rng(config.seed)
    written = []
    for pair, symbol in zip(market.pairs, market.symbols()):
        lib = arctic.library(market.library)
        last = arctic.last_candle_time(market.exchange, market.market_type, symbol)
        if last is None:
            raise dg.Failure(description=f"{pair}: no stored {market.timeframe} candles in ohlcv/{market.exchange}/{market.market_type}")
        before = lib.read_metadata(symbol)
        recent = arctic.read_candles(market.exchange, market.market_type, symbol, start=last - pd.Timedelta(days=2))
        new = synthetic_shift(recent, step, periods, config.volatility_factor, config.trend_per_day, rng)
        previous_demo = (before.metadata or {}).get(DEMO_METADATA_KEY)
        demo = {
            "since": previous_demo["since"] if previous_demo else new.index[0].isoformat(),
            "version_before": previous_demo["version_before"] if previous_demo else int(before.version),
        }
        meta = {**(before.metadata or {}), DEMO_METADATA_KEY: demo}
        start, end = new.index[0], new.index[-1] + step
        version = arctic.replace_window(market.exchange, market.market_type, symbol, new, start, end, meta)
        written.append({
            "pair": pair, "symbol": symbol, "first": start.isoformat(), "last": new.index[-1].isoformat(),
            "candles": len(new), "version_before": int(before.version), "version_after": version,
            "last_close_before": float(recent["close"].iloc[-1]), "last_close_after": float(new["close"].iloc[-1]),
        })
    return written


def restore_market(arctic: ArcticStore, market: ModelMarket) -> list[dict[str, Any]]:
    """Drop every candle from the first synthetic one on, in a new version (the demo versions stay readable)."""
    restored = []
    for pair, symbol in zip(market.pairs, market.symbols()):
        lib = arctic.library(market.library)
        if not lib.has_symbol(symbol):
            continue
        item = lib.read_metadata(symbol)
        demo = (item.metadata or {}).get(DEMO_METADATA_KEY)
        if not demo:
            continue
        since = pd.Timestamp(demo["since"])
        data = lib.read(symbol).data
        kept = data[data.index < since]
        meta = {k: v for k, v in (item.metadata or {}).items() if k != DEMO_METADATA_KEY}
        written = lib.write(symbol, kept.astype("float64"), metadata=meta)
        restored.append({"pair": pair, "symbol": symbol, "removed": int(len(data) - len(kept)), "since": demo["since"],
                         "version_before": int(item.version), "version_after": int(written.version)})
    return restored


def _demo_table(rows: list[dict[str, Any]]) -> dg.TableMetadataValue:
    if not rows:
        return dg.MetadataValue.table(records=[], schema=dg.TableSchema(columns=[dg.TableColumn("pair", "string")]))
    columns = list(rows[0])
    kinds = {bool: "bool", int: "int", float: "float"}
    return dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, kinds.get(type(rows[0][c]), "string")) for c in columns]),
    )


def demo_jobs(specs: list[StrategySpec], base_path: Path = BASE_CONFIG_PATH) -> list[dg.JobDefinition]:
    by_name = {s.name: s for s in model_specs(specs)}
    key = ("demo", tuple((s.name, str(s.file)) for s in by_name.values()), str(base_path))
    if key in _JOBS:
        return _JOBS[key]
    # Candle writes are serialised per library with the market-data pool of the first model's market.
    default = next(iter(by_name.values()), None)
    pool_market = _declared_market(default, base_path) if default is not None else None
    pool = f"arcticdb_ohlcv_{pool_market[0]}_{pool_market[1]}" if pool_market else None

    def market_for(name: str | None) -> tuple[StrategySpec, ModelMarket]:
        spec = _known_model(by_name, name)
        market = market_of(strategy_config(spec, base_path))
        if (market.exchange, market.market_type) != pool_market:
            raise dg.Failure(
                description=f"the demo shifts {pool_market[0]} {pool_market[1]} candles only (the market of "
                f"{default.name}); {spec.name} trades {market.exchange} {market.market_type}"
            )
        return spec, market

    @dg.op(name="append_shifted_candles", pool=pool)
    def append_shifted_candles(context: dg.OpExecutionContext, config: DemoMarketShiftConfig, arctic: ArcticStore):
        spec, market = market_for(config.model)
        with arctic.candle_writer(market.exchange, market.market_type, on_wait=context.log.info):
            written = shift_market(arctic, market, config)
        context.log.info(
            f"appended {sum(w['candles'] for w in written)} synthetic {market.timeframe} candles to "
            f"{len(written)} pairs of {spec.name} (volatility x{config.volatility_factor}, trend {config.trend_per_day:+.2%}/day)"
        )
        context.add_output_metadata({
            "model": spec.name,
            "written": _demo_table(written),
            "candles_written": sum(w["candles"] for w in written),
            "first_synthetic_candle": written[0]["first"],
            "last_synthetic_candle": written[-1]["last"],
            "volatility_factor": config.volatility_factor,
            "trend_per_day": config.trend_per_day,
            "undo": f"run {DEMO_RESTORE_JOB} (drops the synthetic candles) or `make clean` (drops all local state)",
        })
        return len(written)

    @dg.op(name="drop_shifted_candles", pool=pool)
    def drop_shifted_candles(context: dg.OpExecutionContext, config: DemoMarketRestoreConfig, arctic: ArcticStore):
        spec, market = market_for(config.model)
        with arctic.candle_writer(market.exchange, market.market_type, on_wait=context.log.info):
            restored = restore_market(arctic, market)
        context.add_output_metadata({
            "model": spec.name,
            "restored": _demo_table(restored),
            "candles_removed": sum(r["removed"] for r in restored),
        })
        if not restored:
            context.log.info(f"{spec.name}: no synthetic demo candles stored; nothing to restore")
        return len(restored)

    @dg.job(
        name=DEMO_SHIFT_JOB,
        description="Demo: append a few days of synthetic candles (several times the volatility, with a trend) after "
        "the last stored candle of a model's pairs, so the drift check sees a changed market. Append only; "
        f"undo with {DEMO_RESTORE_JOB}. See docs/models.md.",
        tags=aws_contract.ecs_run_tags("sync"),
    )
    def shift_job():
        append_shifted_candles()

    @dg.job(
        name=DEMO_RESTORE_JOB,
        description=f"Demo: remove the synthetic candles written by {DEMO_SHIFT_JOB} (a new ArcticDB version "
        "holding the candles as they were before the first shift).",
        tags=aws_contract.ecs_run_tags("sync"),
    )
    def restore_job():
        drop_shifted_candles()

    _JOBS[key] = [shift_job, restore_job]
    return _JOBS[key]


def build_model_lifecycle(
    specs: list[StrategySpec], base_path: Path = BASE_CONFIG_PATH,
) -> tuple[list[Any], list[dg.ScheduleDefinition]]:
    """Jobs (``train_<Name>`` per model strategy, ``evaluate_challenger``, the demo jobs) and the retraining
    schedules (RUNNING by default)."""
    models = model_specs(specs)
    jobs: list[Any] = [train_job(s.name) for s in models]
    schedules = [train_schedule(s) for s in models]
    if models:
        jobs += [evaluate_job(specs, base_path), *demo_jobs(specs, base_path)]
    return jobs, schedules

