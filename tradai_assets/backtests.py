"""One backtest from pinned inputs to recorded results, shared by the backtest assets, the ad-hoc
backtest job and the reproduce job.

A plan pins every input: the config (by content hash), the strategy source (by hash), the markets
snapshot (by hash) and each candle series (by ArcticDB version). The same plan gives the same trades;
the lineage logged with every run is enough to build the plan again.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from resources.arctic import ArcticStore
from resources.freqtrade_runner import BacktestOutcome, BacktestRequest, FreqtradeRunner
from resources.mlflow_tracker import MlflowTracker
from tradai_core.candles import candle_symbol, parse_candle_symbol, timeframe_delta
from tradai_core.metrics import metrics_of
from tradai_core.strategy_config import TIMERANGE_ALL, market_type
from tradai_core.strategy_discovery import source_hash


class BacktestInputError(ValueError):
    """Inputs a backtest cannot run on; the message names the pair, range or setting at fault."""


@dataclass
class BacktestPlan:
    strategy: str
    strategy_file: Path
    config: dict[str, Any]
    config_hash: str
    timerange: str
    markets_hash: str
    data_versions: dict[str, int]
    request: BacktestRequest
    warnings: list[str] = field(default_factory=list)
    model: dict[str, Any] | None = None
    """A model strategy's model: {"name", "version", "tracking_uri"} (Freqtrade's config["tradai_model"])."""

    @property
    def exchange(self) -> str:
        return self.config["exchange"]["name"]

    @property
    def pairs(self) -> list[str]:
        return list(self.config["exchange"]["pair_whitelist"])

    @property
    def timeframe(self) -> str:
        return self.config["timeframe"]

    def lineage(self) -> dict[str, str]:
        """Everything that decides the trades, as MLflow params."""
        from importlib.metadata import version

        return {
            "strategy": self.strategy,
            "strategy_file": self.strategy_file.name,
            "strategy_source_hash": source_hash(self.strategy_file),
            "config_hash": self.config_hash,
            "timerange": self.timerange,
            "pairs": json.dumps(self.pairs),
            "timeframe": self.timeframe,
            "exchange": self.exchange,
            "market_type": market_type(self.config),
            "markets_snapshot_hash": self.markets_hash,
            "data_versions": json.dumps(self.data_versions, sort_keys=True),
            "freqtrade_version": version("freqtrade"),
            "ccxt_version": version("ccxt"),
            **({} if self.model is None else {
                "model_name": str(self.model["name"]), "model_version": str(int(self.model["version"])),
            }),
        }


def _span(frame: pd.DataFrame, step: pd.Timedelta) -> tuple[pd.Timestamp, pd.Timestamp]:
    return frame.index[0], frame.index[-1] + step


def resolve_timerange(timerange: str, first: pd.Timestamp, end: pd.Timestamp, what: str) -> str:
    """Freqtrade's timerange for the config's policy; refuses ranges that are empty, reversed or
    outside the stored candles [first, end)."""
    available = f"{what} span {first:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
    if timerange == TIMERANGE_ALL:
        return f"{first.floor('D'):%Y%m%d}-{end.ceil('D'):%Y%m%d}"
    start_text, sep, stop_text = timerange.partition("-")
    try:
        if not sep or any(t and (len(t) != 8 or not t.isdigit()) for t in (start_text, stop_text)):
            raise ValueError("expected YYYYMMDD-YYYYMMDD, either side may be empty")
        start = pd.Timestamp(start_text, tz="UTC") if start_text else first.floor("D")
        stop = pd.Timestamp(stop_text, tz="UTC") if stop_text else end.ceil("D")
    except ValueError as exc:
        raise BacktestInputError(f"timerange {timerange!r}: {exc}") from exc
    if stop <= start:
        raise BacktestInputError(f"timerange {timerange!r} is empty or reversed")
    if start < first.floor("D") or stop > end.ceil("D"):
        raise BacktestInputError(f"timerange {timerange!r} reaches outside the stored candles: {available}")
    return f"{start:%Y%m%d}-{stop:%Y%m%d}"


def _stake_warnings(config: dict[str, Any], markets: dict[str, Any], candles: dict, pairs: list[str]) -> list[str]:
    stake = config.get("stake_amount")
    if not isinstance(stake, int | float):
        return []
    out = []
    for pair in pairs:
        limits = markets[pair].get("limits", {})
        close = float(candles[pair]["close"].median())
        minimum = max(
            (limits.get("cost") or {}).get("min") or 0.0,
            ((limits.get("amount") or {}).get("min") or 0.0) * close,
        )
        if stake < minimum:
            out.append(
                f"{pair}: stake {stake} {config['stake_currency']} is below the market's minimum order "
                f"of about {minimum:.8g} {config['stake_currency']}; Freqtrade will refuse its entries"
            )
    return out


def _timerange_bounds(timerange: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    start, _, stop = timerange.partition("-")
    return pd.Timestamp(start, tz="UTC"), pd.Timestamp(stop, tz="UTC")


def funding_interval(pair: str, rates: pd.DataFrame) -> pd.Timedelta:
    """The exchange's funding interval: the most common spacing of its published rates."""
    spacing = pd.Series(rates.index).diff().dropna()
    if spacing.empty:
        raise BacktestInputError(f"{pair}: a single stored funding rate tells no funding interval")
    return spacing.mode().iloc[0]


def _describe_times(times: pd.DatetimeIndex, limit: int = 4) -> str:
    shown = ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in times[:limit])
    return f"{len(times)} funding time(s) from {times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M} UTC ({shown}{', ...' if len(times) > limit else ''})"


def futures_candles(
    config: dict[str, Any],
    pairs: list[str],
    stored: list[str],
    read,
    window: tuple[pd.Timestamp, pd.Timestamp],
) -> dict[tuple[str, str, str], pd.DataFrame]:
    """Funding rates and mark candles in the series Freqtrade's futures backtest reads, or a
    BacktestInputError naming every funding time in ``window`` that lacks a rate or a mark price.

    Freqtrade charges funding at each row of the inner join of its funding-rate and mark series (at
    the exchange's ``funding_fee_timeframe``/``mark_ohlcv_timeframe``, 1h on Binance) and charges
    nothing where either lacks a row. Rates are stored as published (every 8h on Binance in 2021):
    they are handed over under Freqtrade's funding timeframe with rows only at the published times,
    never filled in between, so funding is charged exactly when and as the exchange charged it. The
    mark price at a funding time is the open of the stored mark candle at Freqtrade's mark timeframe;
    where that candle is missing, the open of a coarser stored mark candle starting at that time
    (the same instant's price), as a zero-range candle.
    """
    from resources.freqtrade_runner import futures_series

    series = futures_series(config)
    funding_step = timeframe_delta(series.funding_timeframe)
    out: dict[tuple[str, str, str], pd.DataFrame] = {}
    problems: list[str] = []
    for pair in pairs:
        mine = [parse_candle_symbol(s) for s in stored if parse_candle_symbol(s)[0] == pair]
        funding_frames = [read(candle_symbol(pair, tf, ct)) for _, tf, ct in mine if ct == "funding_rate"]
        funding_frames = [f for f in funding_frames if f is not None and not f.empty]
        if not funding_frames:
            problems.append(f"{pair}: no funding rates stored (ohlcv/{config['exchange']['name']}/futures has no {pair}|<timeframe>|funding_rate)")
            continue
        rates = pd.concat(funding_frames).sort_index()
        rates = rates[~rates.index.duplicated(keep="last")]
        rates.index = rates.index.floor(funding_step)
        interval = funding_interval(pair, rates)

        mark_timeframes = sorted(
            (tf for _, tf, ct in mine if ct == series.mark_candle_type), key=timeframe_delta
        )
        parts: list[pd.DataFrame] = []
        covered = pd.DatetimeIndex([], tz="UTC")
        for tf in mark_timeframes:  # finest first: Freqtrade's own timeframe wins where both exist
            frame = read(candle_symbol(pair, tf, series.mark_candle_type))
            if frame is None or frame.empty or timeframe_delta(tf) < timeframe_delta(series.mark_timeframe):
                continue
            frame = frame[~frame.index.isin(covered)]
            if tf != series.mark_timeframe:
                frame = frame[["open"]].assign(high=frame["open"], low=frame["open"], close=frame["open"], volume=float("nan"))
            parts.append(frame)
            covered = covered.union(frame.index)
        marks = (pd.concat(parts) if parts else pd.DataFrame(
            columns=["open", "high", "low", "close", "volume"], dtype="float64", index=pd.DatetimeIndex([], tz="UTC", name="date")
        )).sort_index()

        first = window[0].ceil(interval)
        due = pd.date_range(first, window[1], freq=interval, inclusive="left")
        no_rate = due[~due.isin(rates.index)]
        no_mark = due[~due.isin(marks.index)]
        if len(no_rate):
            problems.append(f"{pair}: funding rates missing at {_describe_times(no_rate)}")
        if len(no_mark):
            problems.append(
                f"{pair}: {series.mark_candle_type} candles ({series.mark_timeframe}) missing at {_describe_times(no_mark)}"
            )
        out[(pair, series.funding_timeframe, "funding_rate")] = rates
        out[(pair, series.mark_timeframe, series.mark_candle_type)] = marks
    if problems:
        raise BacktestInputError(
            "futures backtest needs a funding rate and a mark price at every funding time of "
            f"{window[0]:%Y-%m-%d %H:%M} to {window[1]:%Y-%m-%d %H:%M} UTC (Freqtrade would silently charge no funding): "
            + "; ".join(problems)
        )
    return out


def plan_backtest(
    arctic: ArcticStore,
    strategy: str,
    strategy_file: Path,
    config: dict[str, Any],
    config_hash: str,
    *,
    markets_hash: str | None = None,
    data_versions: dict[str, int] | None = None,
    model: dict[str, Any] | None = None,
) -> BacktestPlan:
    """Pin every input; with hashes and versions given (a reproduction), exactly those.

    ``model`` (or the config's own ``tradai_model``): the version of a model strategy's model,
    {"name", "version", "tracking_uri"}; handed to the strategy as config["tradai_model"] and recorded
    as ``model_name``/``model_version`` in the lineage. It is not part of the config hash."""
    model = model if model is not None else config.get("tradai_model")
    if model is not None:
        missing = [k for k in ("name", "version", "tracking_uri") if model.get(k) in (None, "")]
        if missing:
            raise BacktestInputError(f"{strategy}: the model to backtest with lacks {', '.join(missing)}: {model}")
        model = {**model, "version": int(model["version"])}
    config = {k: v for k, v in config.items() if k != "tradai_model"}
    exchange = config["exchange"]["name"]
    mtype = market_type(config)
    timeframe = config["timeframe"]
    pairs = list(config["exchange"]["pair_whitelist"])
    if not pairs:
        raise BacktestInputError(f"{strategy}: the config's exchange.pair_whitelist is empty")

    if markets_hash is None:
        snapshot = arctic.latest_markets_snapshot(exchange, mtype)
        if snapshot is None:
            raise BacktestInputError(f"no markets snapshot for {exchange} {mtype}: materialise markets/{exchange}/{mtype} first")
    else:
        snapshot = arctic.markets_snapshot(exchange, mtype, markets_hash)
    markets = snapshot.payload["markets"]
    absent = [p for p in pairs if p not in markets]
    if absent:
        raise BacktestInputError(
            f"pair(s) {', '.join(absent)} absent from the {exchange} {mtype} markets snapshot "
            f"{snapshot.content_hash[:12]} ({len(markets)} markets)"
        )

    step = timeframe_delta(timeframe)
    candles: dict[tuple[str, str, str], pd.DataFrame] = {}
    versions: dict[str, int] = {}

    def read(symbol: str) -> pd.DataFrame | None:
        """A stored series at the version the plan pins (the newest one unless reproducing)."""
        version = arctic.candle_version(exchange, mtype, symbol) if data_versions is None else data_versions.get(symbol)
        frame = None if version is None else arctic.read_candles(exchange, mtype, symbol, as_of=version)
        if frame is not None:
            versions[symbol] = version
        return frame

    for pair in pairs:
        frame = read(candle_symbol(pair, timeframe, mtype))
        if frame is None or frame.empty:
            raise BacktestInputError(f"no stored {timeframe} candles for {pair} in ohlcv/{exchange}/{mtype}")
        candles[(pair, timeframe, mtype)] = frame

    spans = [_span(f, step) for f in candles.values()]
    first, end = min(s[0] for s in spans), max(s[1] for s in spans)
    timerange = resolve_timerange(
        config.get("timerange", TIMERANGE_ALL), first, end, f"stored {exchange} {mtype} {timeframe} candles of {len(pairs)} pairs"
    )
    if mtype == "futures":
        stored = arctic.candle_symbols(exchange, mtype) if data_versions is None else sorted(data_versions)
        window = (max(first, _timerange_bounds(timerange)[0]), min(end, _timerange_bounds(timerange)[1]))
        candles.update(futures_candles(config, pairs, stored, read, window))
    engine_config = {**config, "timerange": timerange, **({} if model is None else {"tradai_model": model})}
    warnings = _stake_warnings(config, markets, {p: candles[(p, timeframe, mtype)] for p in pairs}, pairs)
    request = BacktestRequest(
        strategy_name=strategy,
        strategy_file=strategy_file,
        config=engine_config,
        candles=candles,
        markets=markets,
        leverage_tiers=snapshot.payload.get("leverage_tiers", {}),
    )
    return BacktestPlan(
        strategy, strategy_file, config, config_hash, timerange, snapshot.content_hash, versions, request, warnings, model
    )


def trades_hash(trades: pd.DataFrame) -> str:
    """A digest of the trades' exact values, column names and types."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[c, str(t)] for c, t in trades.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(trades, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def equity_curve(wallet: pd.DataFrame) -> pd.DataFrame:
    """Account value in the stake currency per candle, from Freqtrade's wallet capture."""
    if wallet.empty:
        return pd.DataFrame({"equity": pd.Series([], dtype="float64")}, index=pd.DatetimeIndex([], tz="UTC", name="date"))
    value = (wallet["rate"] * wallet["balance"]).groupby(wallet["date"]).sum()
    frame = value.rename("equity").to_frame().astype("float64")
    frame.index = pd.DatetimeIndex(frame.index, name="date").tz_convert("UTC")
    return frame


PLOT_POINTS = 2000


def plotted_points(equity: pd.DataFrame, points: int = PLOT_POINTS) -> pd.DataFrame:
    """At most about ``2 * points`` rows of the curve for an 800-pixel plot: the lowest and highest
    value of each stretch of candles, so every peak and trough still shows (drawing all 100k+ candles
    of a year of 5m takes over a second)."""
    if len(equity) <= 2 * points:
        return equity
    stretch = np.arange(len(equity)) // -(-len(equity) // points)
    values = equity["equity"].to_numpy()
    grouped = pd.Series(values).groupby(stretch)
    keep = np.union1d(grouped.idxmin().to_numpy(), grouped.idxmax().to_numpy())
    return equity.iloc[keep]


def equity_png(equity: pd.DataFrame, title: str, boundaries: tuple[pd.Timestamp, ...] = ()) -> bytes:
    """The equity curve as a PNG; ``boundaries`` are drawn as dashed vertical lines (walk-forward windows)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3), dpi=100)
    axes = figure.subplots()
    if not equity.empty:
        shown = plotted_points(equity)
        axes.plot(shown.index, shown["equity"], linewidth=1)
    for boundary in boundaries:
        axes.axvline(boundary, color="grey", linestyle="--", linewidth=0.8)
    axes.set_title(title)
    axes.set_ylabel("equity")
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


@dataclass
class RecordedBacktest:
    plan: BacktestPlan
    outcome: BacktestOutcome
    equity: pd.DataFrame
    metrics: dict[str, float]
    trades_hash: str
    run_id: str
    run_url: str
    png: bytes


def run_and_record(
    plan: BacktestPlan,
    runner: FreqtradeRunner,
    tracker: MlflowTracker,
    kind: str,
    tags: dict[str, str],
) -> RecordedBacktest:
    """Run the plan, then log one MLflow run with lineage, metrics and artifacts."""
    return record_backtest(plan, runner.run(plan.request), tracker, kind, tags)


def record_backtest(
    plan: BacktestPlan,
    outcome: BacktestOutcome,
    tracker: MlflowTracker,
    kind: str,
    tags: dict[str, str],
) -> RecordedBacktest:
    """Equity curve, trades digest and plot of a finished backtest, logged as one MLflow run."""
    equity = equity_curve(outcome.wallet)
    digest = trades_hash(outcome.trades)
    png = equity_png(equity, f"{plan.strategy} {plan.timerange}")
    metrics = metrics_of(outcome.stats)
    with tempfile.TemporaryDirectory(prefix=f"mlflow-{plan.strategy}-") as tmp:
        out = Path(tmp)
        (out / "config.json").write_text(json.dumps(outcome.engine_config, indent=2, sort_keys=True))
        (out / "markets.json").write_text(json.dumps(
            {"markets": plan.request.markets, "leverage_tiers": plan.request.leverage_tiers}, sort_keys=True
        ))
        outcome.trades.to_parquet(out / "trades.parquet", index=False)
        (out / "stats.json").write_text(json.dumps(outcome.stats, indent=2, sort_keys=True))
        (out / plan.strategy_file.name).write_bytes(plan.strategy_file.read_bytes())
        (out / "equity.png").write_bytes(png)
        run_id = tracker.log_run(
            experiment=f"strategies/{plan.strategy}",
            run_name=f"{kind} {plan.strategy} {plan.timerange}",
            params=plan.lineage(),
            metrics=metrics,
            tags={**tags, "tradai.kind": kind, "tradai.trades_hash": digest},
            artifact_dir=out,
        )
    return RecordedBacktest(plan, outcome, equity, metrics, digest, run_id, tracker.run_url(run_id), png)


def summary_markdown(recorded: RecordedBacktest) -> str:
    plan, stats = recorded.plan, recorded.outcome.stats
    currency = plan.config["stake_currency"]
    rows = [
        ("trades", f"{int(stats.get('total_trades', 0))}"),
        ("profit", f"{stats.get('profit_total_abs', 0):.8f} {currency} ({100 * stats.get('profit_total', 0):.2f}%)"),
        ("win rate", f"{100 * (stats.get('winrate') or 0):.1f}%"),
        ("max drawdown", f"{100 * (stats.get('max_drawdown_account') or 0):.2f}%"),
        ("sharpe / sortino / calmar", f"{stats.get('sharpe', 0):.2f} / {stats.get('sortino', 0):.2f} / {stats.get('calmar', 0):.2f}"),
        ("timerange", plan.timerange),
        ("pairs", ", ".join(plan.pairs)),
        ("MLflow run", f"[{recorded.run_id}]({recorded.run_url})"),
    ]
    if plan.model is not None:
        rows.append(("model", f"{plan.model['name']} version {plan.model['version']}"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    warnings = "".join(f"\n- {w}" for w in plan.warnings)
    return f"### {plan.strategy}\n\n| | |\n|---|---|\n{table}\n" + (f"\n**Warnings**{warnings}\n" if warnings else "")


def equity_markdown(recorded: RecordedBacktest) -> str:
    encoded = base64.b64encode(recorded.png).decode()
    return f"![equity curve of {recorded.plan.strategy}](data:image/png;base64,{encoded})"


def result_metadata(recorded: RecordedBacktest) -> dict[str, Any]:
    """Materialisation metadata: metrics as numbers (plotted over time), summary, plot, MLflow link."""
    import dagster as dg

    metadata: dict[str, Any] = {name: dg.MetadataValue.float(value) for name, value in recorded.metrics.items()}
    metadata["trades"] = dg.MetadataValue.int(len(recorded.outcome.trades))
    metadata.update({
        "summary": dg.MetadataValue.md(summary_markdown(recorded)),
        "equity_curve": dg.MetadataValue.md(equity_markdown(recorded)),
        "mlflow_run_id": recorded.run_id,
        "mlflow_run": dg.MetadataValue.url(recorded.run_url),
        "config_hash": recorded.plan.config_hash,
        "markets_snapshot_hash": recorded.plan.markets_hash,
        "timerange": recorded.plan.timerange,
        "trades_hash": recorded.trades_hash,
        "data_versions": dg.MetadataValue.json(recorded.plan.data_versions),
        "warnings": dg.MetadataValue.json(recorded.plan.warnings),
    })
    if recorded.plan.model is not None:
        metadata["model_name"] = recorded.plan.model["name"]
        metadata["model_version"] = dg.MetadataValue.int(recorded.plan.model["version"])
    return metadata
