"""``strategies/<Name>/divergence``: does the bot trade as its backtest says it would? One report per UTC day.

A partition replays the strategy with Freqtrade's backtesting over the day the bot traded (from the
bot's start that day, or midnight, to its stop or midnight, with the strategy's startup candles
before it), offline, on the candles in ArcticDB and the markets snapshot, with the bot's deployed
config (the deployment in effect that day: its config hash, desired state and model version). It
reads the bot's own trades (``resources.bot_trades``) and matches them trade by trade
(``tradai_core.divergence``): trades only one side made, entry and exit differences in candles,
slippage in basis points, fee differences and the profit gap.

A day without bot trades gives a report that says so, without a replay (the heartbeat sensor
watches bots that stop working). A day outside the stored candles, a bot database that is missing
or locked, or a deployment that never ran fail the partition with a message naming the cause.

The asset's check ``divergence`` judges the share of trades that are not aligned (one-sided, or
entered or exited on another candle): a warning above ``warn_above``, a failure above ``fail_above``
(``divergence:`` in deployments.yaml; defaults in ``DivergenceSettings``). A failure is sent to the
notifier.
"""

import base64
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import yaml

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.bot_trades import BotTradeLog, BotTrades, BotTradesError
from resources.freqtrade_runner import BacktestError, FreqtradeRunner, import_strategy_file
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from resources.trading_state import TradingState
from tradai_assets.backtests import BacktestInputError, plan_backtest, plotted_points
from tradai_assets.deployments import DesiredState, bot_config, deployments_path
from tradai_core.candles import timeframe_delta
from tradai_core.divergence import (
    TRADE_COLUMNS,
    DivergenceSummary,
    divergent_trades,
    match_trades,
    summarise,
)
from tradai_core.keys import deployment_key, strategy_id
from tradai_core.strategy_discovery import StrategySpec

DIVERGENCE_CHECK = "divergence"
# Binance opened in July 2017: no bot traded before.
PARTITIONS = dg.DailyPartitionsDefinition(start_date="2017-07-14", timezone="UTC", end_offset=1)


def divergence_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["strategies", name, "divergence"])


class DivergenceError(ValueError):
    """A report that cannot be made; the message names the deployment, day, file or setting."""


@dataclass(frozen=True)
class DivergenceSettings:
    warn_above: float = 0.1
    """Share of a day's trades not aligned with the replay above which the check warns."""
    fail_above: float = 0.25
    """... above which it fails (and the notifier is told)."""
    tolerance_candles: int = 1
    """How far apart (in candles) a bot trade's entry may be from a replay trade's to be matched."""

    def __post_init__(self) -> None:
        if not 0 <= self.warn_above <= self.fail_above <= 1:
            raise DivergenceError(
                f"divergence settings: need 0 <= warn_above ({self.warn_above}) <= fail_above ({self.fail_above}) <= 1"
            )
        if (
            isinstance(self.tolerance_candles, bool)
            or not isinstance(self.tolerance_candles, int)
            or self.tolerance_candles < 0
        ):
            raise DivergenceError(
                f"divergence settings: tolerance_candles {self.tolerance_candles!r} must be an integer >= 0"
            )


def load_settings(path: Path | None = None) -> DivergenceSettings:
    """``divergence:`` of deployments.yaml (``warn_above``, ``fail_above``, ``tolerance_candles``)."""
    path = path or deployments_path()
    document = yaml.safe_load(path.read_text()) if path.is_file() else None
    raw = (document or {}).get("divergence") or {}
    allowed = set(DivergenceSettings.__dataclass_fields__)
    if not isinstance(raw, dict) or set(raw) - allowed:
        raise DivergenceError(f"{path}: divergence must be a mapping of {', '.join(sorted(allowed))}, got {raw!r}")
    try:
        return DivergenceSettings(**raw)
    except TypeError as exc:
        raise DivergenceError(f"{path}: divergence: {exc}") from exc
    except DivergenceError as exc:
        raise DivergenceError(f"{path}: {exc}") from exc


@dataclass
class DivergenceReport:
    strategy: str
    day: pd.Timestamp
    window: tuple[pd.Timestamp, pd.Timestamp] | None
    matched: pd.DataFrame
    summary: DivergenceSummary
    reason: str | None = None
    """Why there is no replay (a day without bot trades), else None."""
    bot_source: str = ""
    config_hash: str | None = None
    model_version: int | None = None
    replay_trades: pd.DataFrame | None = None
    divergent: list[str] = field(default_factory=list)

    def verdict(self, settings: DivergenceSettings) -> tuple[str, str]:
        share = self.summary.divergent_share
        text = (
            f"{share:.0%} of {self.summary.trades} trade(s) not aligned with the replay "
            f"(warn above {settings.warn_above:.0%}, fail above {settings.fail_above:.0%})"
        )
        if self.reason:
            return "ok", self.reason
        if share > settings.fail_above:
            return "fail", text
        if share > settings.warn_above:
            return "warn", text
        return "ok", text


def deployment_on(instance: dg.DagsterInstance, name: str, day_end: pd.Timestamp) -> dict[str, Any]:
    """The metadata of the deployment in effect before ``day_end``: its latest materialisation by then
    that ran a bot (dry_run or live)."""
    records = instance.fetch_materializations(deployment_key(name), limit=200).records
    for record in records:  # newest first
        if record.timestamp >= day_end.timestamp():
            continue
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        if meta.get("mode") in ("dry_run", "live") and meta.get("config_hash"):
            return meta
    raise DivergenceError(
        f"{name} had no running deployment before {day_end:%Y-%m-%d %H:%M} UTC "
        f"({deployment_key(name).to_user_string()} has no dry_run or live materialisation by then)"
    )


def replay_frame(trades: pd.DataFrame) -> pd.DataFrame:
    """Freqtrade's backtest trades in the matching's columns; trades force-closed at the end are open."""
    if trades.empty:
        return pd.DataFrame(columns=list(TRADE_COLUMNS))
    is_open = trades["is_open"].astype(bool) if "is_open" in trades else trades["exit_reason"].eq("force_exit")
    fee_cost = trades["fee_open"] * trades["open_rate"] * trades["amount"] + (
        trades["fee_close"] * trades["close_rate"] * trades["amount"]
    )
    return pd.DataFrame(
        {
            "trade_id": range(len(trades)),
            "pair": trades["pair"],
            "is_short": trades["is_short"].astype(bool),
            "entry_time": pd.to_datetime(trades["open_date"], utc=True),
            "exit_time": pd.to_datetime(trades["close_date"], utc=True).where(~is_open),
            "open_rate": trades["open_rate"].astype(float),
            "close_rate": trades["close_rate"].astype(float),
            "amount": trades["amount"].astype(float),
            "fee_cost": fee_cost.astype(float),
            "profit_abs": trades["profit_abs"].astype(float),
            "is_open": is_open,
        }
    ).reset_index(drop=True)


def _in_day(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return frame[(frame["entry_time"] >= start) & (frame["entry_time"] < end)].reset_index(drop=True)


def build_report(
    *,
    spec: StrategySpec,
    day: pd.Timestamp,
    deployment: dict[str, Any],
    log: BotTradeLog,
    arctic: ArcticStore,
    backtest_store: BacktestStore,
    runner: FreqtradeRunner,
    stopped_at: datetime | None = None,
    settings: DivergenceSettings | None = None,
    model_tracking_uri: str | None = None,
) -> DivergenceReport:
    """The report of one bot-day: the bot's trades that entered that day against the replay's."""
    settings = settings or DivergenceSettings()
    name = spec.name
    day = day.tz_convert("UTC") if day.tzinfo else day.tz_localize("UTC")
    day_end = day + pd.Timedelta(days=1)
    bot = _in_day(log.trades, day, day_end)
    config_hash = deployment["config_hash"]
    model_version = deployment.get("model_version")
    if bot.empty:
        empty = match_trades(bot, bot, pd.Timedelta(minutes=1))
        return DivergenceReport(
            name,
            day,
            None,
            empty,
            summarise(empty),
            reason=f"the bot {log.strategy_id} made no trades on {day:%Y-%m-%d} ({log.source}); nothing to replay",
            bot_source=log.source,
            config_hash=config_hash,
            model_version=model_version,
        )
    try:
        stored = backtest_store.config(name, config_hash)
    except KeyError as exc:
        raise DivergenceError(f"the deployed config of {name}: {exc.args[0]}") from exc
    desired = deployment.get("desired") or {}
    config = bot_config(
        stored,
        name,
        DesiredState(
            mode=desired.get("mode", "dry_run"),
            exchange_secret=desired.get("exchange_secret"),
            stake_amount=desired.get("stake_amount", "unlimited"),
            pairs=tuple(desired.get("pairs") or ()),
        ),
    )
    config["timerange"] = f"{day:%Y%m%d}-{day_end:%Y%m%d}"
    model = None
    if spec.is_model:
        if model_version is None:
            raise DivergenceError(f"{name} is a model strategy but its deployment records no model_version")
        model = {"name": name, "version": int(model_version), "tracking_uri": model_tracking_uri}
    try:
        plan = plan_backtest(arctic, name, spec.file, config, config_hash, model=model)
    except BacktestInputError as exc:
        raise DivergenceError(f"replay of {name} on {day:%Y-%m-%d}: {exc}") from exc
    step = timeframe_delta(plan.timeframe)
    start = day
    if log.bot_start_time is not None and pd.Timestamp(log.bot_start_time) > day:
        start = pd.Timestamp(log.bot_start_time).floor(step)
    end = day_end
    if stopped_at is not None and day <= pd.Timestamp(stopped_at) < day_end:
        end = pd.Timestamp(stopped_at).floor(step) + step
    candles_end = max(frame.index[-1] for frame in plan.request.candles.values()) + step
    end = min(end, candles_end)
    if end <= start:
        raise DivergenceError(
            f"replay of {name} on {day:%Y-%m-%d}: the stored candles end at {candles_end:%Y-%m-%d %H:%M} UTC, "
            f"before the bot's window starts ({start:%Y-%m-%d %H:%M} UTC); sync the candles of that day first"
        )
    startup = int(getattr(import_strategy_file(spec.file, name), "startup_candle_count", 0) or 0)
    keep_from = start - (startup + 2) * step
    # Only the window and its startup candles: the engine's cost follows the candles it is handed.
    candles = {
        key: frame[(frame.index >= keep_from) & (frame.index < end)] for key, frame in plan.request.candles.items()
    }
    plan.request.candles = candles
    plan.request.config = {**plan.request.config, "timerange": f"{int(start.timestamp())}-{int(end.timestamp())}"}
    try:
        outcome = runner.run(plan.request)
    except BacktestError as exc:
        raise DivergenceError(f"replay of {name} on {day:%Y-%m-%d}: {exc}") from exc
    replay = _in_day(replay_frame(outcome.trades), day, day_end)
    matched = match_trades(bot, replay, step, settings.tolerance_candles)
    return DivergenceReport(
        name,
        day,
        (start, end),
        matched,
        summarise(matched),
        bot_source=log.source,
        config_hash=config_hash,
        model_version=model_version,
        replay_trades=replay,
        divergent=divergent_trades(matched),
    )


# Metadata -----------------------------------------------------------------------------------------


def profit_curve(matched: pd.DataFrame, side: str) -> pd.Series:
    """Cumulative closed profit of one side by exit time (the bot keeps no per-candle wallet)."""
    closed = matched[[f"{side}_exit", f"{side}_profit"]].dropna().sort_values(f"{side}_exit")
    return closed[f"{side}_profit"].cumsum().set_axis(pd.DatetimeIndex(closed[f"{side}_exit"]))


def overlay_png(report: DivergenceReport) -> bytes:
    """Both sides' cumulative profit over the day in one plot, drawn as the backtest's equity plot is."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3), dpi=100)
    axes = figure.subplots()
    for side, label in (("bot", "bot"), ("replay", "replay")):
        curve = profit_curve(report.matched, side) if not report.matched.empty else pd.Series(dtype=float)
        if not curve.empty:
            shown = plotted_points(curve.rename("equity").to_frame())
            axes.step(shown.index, shown["equity"], where="post", linewidth=1, label=label)
    axes.set_title(f"{report.strategy} {report.day:%Y-%m-%d}: bot against replay")
    axes.set_ylabel("closed profit")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("status", "string"),
        dg.TableColumn("pair", "string"),
        dg.TableColumn("bot_trade_id", "int"),
        dg.TableColumn("bot_entry", "string"),
        dg.TableColumn("replay_entry", "string"),
        dg.TableColumn("entry_diff_candles", "float"),
        dg.TableColumn("bot_exit", "string"),
        dg.TableColumn("replay_exit", "string"),
        dg.TableColumn("exit_diff_candles", "float"),
        dg.TableColumn("entry_slippage_bps", "float"),
        dg.TableColumn("exit_slippage_bps", "float"),
        dg.TableColumn("fee_diff", "float"),
        dg.TableColumn("profit_gap", "float"),
        dg.TableColumn("aligned", "bool"),
    ]
)


def report_metadata(report: DivergenceReport, settings: DivergenceSettings) -> dict[str, Any]:
    summary = report.summary.as_dict()
    metadata: dict[str, Any] = {
        key: (dg.MetadataValue.int(v) if isinstance(v, int) else dg.MetadataValue.float(float(v)))
        for key, v in summary.items()
    }
    columns = [c.name for c in TABLE_SCHEMA.columns]
    metadata["matched_trades"] = dg.MetadataValue.table(
        [dg.TableRecord({c: _cell(row[c]) for c in columns}) for _, row in report.matched.iterrows()],
        schema=TABLE_SCHEMA,
    )
    status, verdict = report.verdict(settings)
    lines = [f"### {report.strategy} on {report.day:%Y-%m-%d}", "", f"**{status}**: {verdict}", ""]
    if report.window:
        lines.append(
            f"Replayed {report.window[0]:%H:%M} to {report.window[1]:%H:%M} UTC; bot trades from "
            f"`{report.bot_source}`; config {report.config_hash}."
        )
    lines += ["", "| | |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in summary.items()]
    if report.divergent:
        lines += ["", "**Divergent trades**"] + [f"- {d}" for d in report.divergent]
    metadata["summary"] = dg.MetadataValue.md("\n".join(lines))
    metadata["divergent_trades"] = dg.MetadataValue.json(report.divergent)
    metadata["reason"] = report.reason if report.reason else dg.MetadataValue.null()
    metadata["bot_trades_source"] = report.bot_source
    metadata["config_hash"] = report.config_hash or dg.MetadataValue.null()
    metadata["model_version"] = report.model_version if report.model_version is not None else dg.MetadataValue.null()
    metadata["thresholds"] = dg.MetadataValue.json(
        {
            "warn_above": settings.warn_above,
            "fail_above": settings.fail_above,
            "tolerance_candles": settings.tolerance_candles,
        }
    )
    if report.window:
        metadata["replay_window"] = f"{report.window[0].isoformat()} - {report.window[1].isoformat()}"
    encoded = base64.b64encode(overlay_png(report)).decode()
    metadata["equity_overlay"] = dg.MetadataValue.md(f"![bot and replay profit](data:image/png;base64,{encoded})")
    return metadata


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# The asset ----------------------------------------------------------------------------------------


def build_divergence_asset(spec: StrategySpec) -> dg.AssetsDefinition:
    name, bot_id = spec.name, strategy_id(spec.name)
    key = divergence_key(name)

    decorate = dg.asset(
        key=key,
        group_name=f"strategy_{name}",
        kinds={"freqtrade"},
        partitions_def=PARTITIONS,
        deps=[deployment_key(name)],
        check_specs=[
            dg.AssetCheckSpec(
                DIVERGENCE_CHECK, asset=key, description="Share of the day's trades not aligned with the replay"
            )
        ],
        description=f"One UTC day of {name}'s bot (id {bot_id}) against Freqtrade's replay of that day: "
        "trades only one side made, entry/exit differences in candles, slippage, fees and profit gap.",
        metadata={**spec.ui_metadata(), "strategy_id": bot_id},
    )

    def materialise(
        context, arctic, backtest_store, freqtrade_runner, bot_trades, trading_state, notifier, tracking_uri: str | None
    ):
        day = pd.Timestamp(context.partition_key, tz="UTC")
        try:
            settings = load_settings()
            deployment = deployment_on(context.instance, name, day + pd.Timedelta(days=1))
            log = bot_trades.read(bot_id)
            heartbeat = trading_state.get(bot_id)
            stopped_at = heartbeat.last_heartbeat if heartbeat and heartbeat.status in ("stopped", "error") else None
            report = build_report(
                spec=spec,
                day=day,
                deployment=deployment,
                log=log,
                arctic=arctic,
                backtest_store=backtest_store,
                runner=freqtrade_runner,
                stopped_at=stopped_at,
                settings=settings,
                model_tracking_uri=tracking_uri,
            )
        except (DivergenceError, BotTradesError) as exc:
            raise dg.Failure(description=f"divergence of {name} on {context.partition_key}: {exc}") from exc
        status, verdict = report.verdict(settings)
        context.log.info(f"{name} {context.partition_key}: {status}: {verdict}")
        if status == "fail":
            notifier.notify(
                "divergence",
                f"{name}: bot diverges from its backtest on {context.partition_key}",
                verdict,
                severity="error",
                details={"summary": report.summary.as_dict(), "divergent_trades": report.divergent},
            )
        check = dg.AssetCheckResult(
            check_name=DIVERGENCE_CHECK,
            passed=status == "ok",  # a warning is a check that did not pass at WARN severity
            severity=dg.AssetCheckSeverity.ERROR if status == "fail" else dg.AssetCheckSeverity.WARN,
            description=verdict if status == "ok" else f"{status}: {verdict}",
            metadata={
                "divergent_share": report.summary.divergent_share,
                "status": status,
                "divergent_trades": dg.MetadataValue.json(report.divergent),
            },
        )
        return dg.MaterializeResult(metadata=report_metadata(report, settings), check_results=[check])

    if spec.is_model:
        # A model strategy replays with the model version its deployment ran, from the registry's MLflow.
        @decorate
        def model_divergence(
            context: dg.AssetExecutionContext,
            arctic: ArcticStore,
            backtest_store: BacktestStore,
            freqtrade_runner: FreqtradeRunner,
            bot_trades: BotTrades,
            trading_state: TradingState,
            notifier: Notifier,
            model_registry: ModelRegistry,
        ):
            return materialise(
                context,
                arctic,
                backtest_store,
                freqtrade_runner,
                bot_trades,
                trading_state,
                notifier,
                model_registry.tracking_uri,
            )

        return model_divergence

    @decorate
    def divergence(
        context: dg.AssetExecutionContext,
        arctic: ArcticStore,
        backtest_store: BacktestStore,
        freqtrade_runner: FreqtradeRunner,
        bot_trades: BotTrades,
        trading_state: TradingState,
        notifier: Notifier,
    ):
        return materialise(context, arctic, backtest_store, freqtrade_runner, bot_trades, trading_state, notifier, None)

    return divergence


def build_divergence_assets(specs: list[StrategySpec] | Any) -> list[dg.AssetsDefinition]:
    return [build_divergence_asset(spec) for spec in specs]
