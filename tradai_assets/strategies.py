"""Strategies as assets: ``strategies/<Name>/config`` and ``strategies/<Name>/backtest`` for every
Freqtrade strategy class in ``strategies/*.py`` (with bias checks for those that opt in), the ad-hoc
backtest job and the reproduce job.

Discovery reads the files without importing them (see ``strategy_discovery``): a broken strategy
fails its own assets, naming the file and the reason; the code location and the other strategies
load regardless.
"""


import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from resources import aws_contract
from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.freqtrade_runner import BacktestError, FreqtradeRunner
from resources.mlflow_tracker import MlflowTracker
from tradai_assets import settings
from tradai_assets.backtests import BacktestInputError, plan_backtest, result_metadata, run_and_record
from tradai_assets.bias_checks import build_bias_checks
from tradai_assets.market_data import content_hash
from tradai_assets.strategy_config import (
    BASE_CONFIG_PATH,
    ConfigError,
    build_strategy_config,
    load_base_config,
    market_type,
)
from tradai_assets.strategy_discovery import StrategySpec, discover_strategies, source_hash
from tradai_assets.universe import UniverseEntry


def strategies_dir() -> Path:
    return Path(os.environ.get("TRADAI_STRATEGIES", settings.REPO_ROOT / "strategies")).resolve()


def config_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["strategies", name, "config"])


def backtest_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["strategies", name, "backtest"])


class StrategyConfigOverrides(dg.Config):
    overrides: dict[str, Any] = {}
    """Freqtrade config keys merged over the base config and the strategy's own (e.g. {"max_open_trades": 5})."""


def _fail(message: str) -> dg.Failure:
    return dg.Failure(description=message)


def _config_for(spec: StrategySpec, base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    if spec.problem:
        raise _fail(spec.problem)
    try:
        return build_strategy_config(base, spec, overrides)
    except ConfigError as exc:
        raise _fail(f"{spec.file}: {spec.name}: {exc}") from exc


def _check_stored_timeframe(spec: StrategySpec, config: dict[str, Any], entries: dict[tuple[str, str], UniverseEntry]) -> None:
    key = (config["exchange"]["name"], market_type(config))
    entry = entries.get(key)
    if entry is not None and config["timeframe"] not in entry.timeframes:
        raise _fail(
            f"{spec.file}: {spec.name}: timeframe {config['timeframe']!r} is not stored for {key[0]} {key[1]} "
            f"(ohlcv/{key[0]}/{key[1]} keeps {', '.join(entry.timeframes)}; add it to the universe)"
        )


def _run_backtest(
    context: dg.OpExecutionContext,
    spec: StrategySpec,
    config: dict[str, Any],
    config_hash: str,
    arctic: ArcticStore,
    runner: FreqtradeRunner,
    mlflow: MlflowTracker,
    kind: str,
    **pinned,
):
    try:
        plan = plan_backtest(arctic, spec.name, spec.file, config, config_hash, **pinned)
        for warning in plan.warnings:
            context.log.warning(warning)
        recorded = run_and_record(plan, runner, mlflow, kind, {"dagster.run_id": context.run.run_id})
    except (BacktestInputError, BacktestError, KeyError) as exc:
        raise _fail(f"{spec.name}: {exc}") from exc
    if len(recorded.outcome.trades) == 0:
        recorded.plan.warnings.append("the backtest made no trades")
        context.log.warning(f"{spec.name}: the backtest made no trades")
    return recorded


def build_config_asset(spec: StrategySpec, base_path: Path, entries: dict[tuple[str, str], UniverseEntry]) -> dg.AssetsDefinition:
    @dg.asset(
        key=config_key(spec.name),
        group_name=f"strategy_{spec.name}",
        kinds={"freqtrade"},
        description=f"Freqtrade config of {spec.name}: {base_path.name} merged with the strategy's overrides, "
        "validated by Freqtrade's config schema and stored by content hash.",
        metadata=spec.ui_metadata(),
    )
    def strategy_config(context: dg.AssetExecutionContext, config: StrategyConfigOverrides, backtest_store: BacktestStore):
        merged = _config_for(spec, load_base_config(base_path), config.overrides)
        _check_stored_timeframe(spec, merged, entries)
        digest = content_hash(merged)
        version = backtest_store.write_config(spec.name, merged, digest)
        context.log.info(f"{spec.name}: config {digest[:12]} (stored version {version})")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(digest),
            metadata={
                "config_hash": digest,
                "stored_version": version,
                "config": dg.MetadataValue.json(merged),
                "pairs": dg.MetadataValue.json(merged["exchange"]["pair_whitelist"]),
                "timeframe": merged["timeframe"],
            },
        )

    return strategy_config


def build_backtest_asset(spec: StrategySpec, base: dict[str, Any]) -> dg.AssetsDefinition:
    exchange, mtype = base["exchange"]["name"], market_type({**base, **spec.config_overrides})
    description = (spec.description + "\n\n" if spec.description else "") + (
        f"Freqtrade backtest of {spec.name} ({spec.file.name}), offline on stored candles and a markets "
        "snapshot; stats, trades and equity curve stored, one MLflow run per backtest."
    )

    @dg.asset(
        key=backtest_key(spec.name),
        group_name=f"strategy_{spec.name}",
        kinds={"freqtrade", "mlflow"},
        deps=[config_key(spec.name), dg.AssetKey(["markets", exchange, mtype]), dg.AssetKey(["ohlcv", exchange, mtype])],
        description=description,
        metadata=spec.ui_metadata(),
        tags=aws_contract.ecs_run_tags("backtest"),
    )
    def backtest(
        context: dg.AssetExecutionContext,
        arctic: ArcticStore,
        backtest_store: BacktestStore,
        freqtrade_runner: FreqtradeRunner,
        mlflow: MlflowTracker,
    ):
        if spec.problem:
            raise _fail(spec.problem)
        stored = backtest_store.latest_config(spec.name)
        if stored is None:
            raise _fail(f"{spec.name}: no stored config; materialise {config_key(spec.name).to_user_string()} first")
        config, digest = stored
        recorded = _run_backtest(context, spec, config, digest, arctic, freqtrade_runner, mlflow, "canonical")
        lineage = {**recorded.plan.lineage(), "mlflow_run_id": recorded.run_id, "trades_hash": recorded.trades_hash}
        backtest_store.write_backtest(spec.name, recorded.outcome.trades, recorded.equity, recorded.outcome.stats, lineage)
        return dg.MaterializeResult(data_version=dg.DataVersion(recorded.trades_hash), metadata=result_metadata(recorded))

    return backtest


# Ad-hoc backtests and reproductions ---------------------------------------------------------------


class AdhocBacktestConfig(dg.Config):
    strategy: str
    """Strategy class name, as in strategies/<Name>/..."""
    timerange: str | None = None
    """Freqtrade's YYYYMMDD-YYYYMMDD, or 'all'."""
    pairs: list[str] | None = None
    timeframe: str | None = None
    stake_amount: float | None = None
    fee: float | None = None
    overrides: dict[str, Any] = {}
    """Any other Freqtrade config keys."""

    def as_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.overrides)
        for key in ("timerange", "timeframe", "stake_amount", "fee"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.pairs is not None:
            out["exchange"] = {**out.get("exchange", {}), "pair_whitelist": self.pairs}
        return out


class ReproduceConfig(dg.Config):
    mlflow_run_id: str
    """The MLflow run of the backtest to re-run from its recorded lineage."""


@dataclass
class StrategyDefinitions:
    specs: list[StrategySpec]
    assets: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]
    jobs: list[dg.JobDefinition]


def build_adhoc_job(specs: dict[str, StrategySpec], base_path: Path) -> dg.JobDefinition:
    @dg.op(name="backtest_with_overrides")
    def backtest_with_overrides(
        context: dg.OpExecutionContext,
        config: AdhocBacktestConfig,
        arctic: ArcticStore,
        backtest_store: BacktestStore,
        freqtrade_runner: FreqtradeRunner,
        mlflow: MlflowTracker,
    ):
        spec = specs.get(config.strategy)
        if spec is None:
            raise _fail(f"unknown strategy {config.strategy!r}; known: {', '.join(sorted(specs)) or 'none'}")
        merged = _config_for(spec, load_base_config(base_path), config.as_overrides())
        digest = content_hash(merged)
        backtest_store.write_config(spec.name, merged, digest)
        recorded = _run_backtest(context, spec, merged, digest, arctic, freqtrade_runner, mlflow, "adhoc")
        context.add_output_metadata(result_metadata(recorded))
        return recorded.run_id

    @dg.job(name="adhoc_backtest", description="A backtest with run-config overrides, logged to MLflow; "
            "the canonical strategies/<Name>/backtest asset is left as it is.", tags=aws_contract.ecs_run_tags("backtest"))
    def job():
        backtest_with_overrides()

    return job


def build_reproduce_job() -> dg.JobDefinition:
    @dg.op(name="rerun_logged_backtest")
    def rerun_logged_backtest(
        context: dg.OpExecutionContext,
        config: ReproduceConfig,
        arctic: ArcticStore,
        backtest_store: BacktestStore,
        freqtrade_runner: FreqtradeRunner,
        mlflow: MlflowTracker,
    ):
        params, tags, _ = mlflow.run_record(config.mlflow_run_id)
        name = params["strategy"]
        with tempfile.TemporaryDirectory(prefix=f"reproduce-{name}-") as tmp:
            strategy_file = mlflow.download(config.mlflow_run_id, params["strategy_file"], Path(tmp))
            if source_hash(strategy_file) != params["strategy_source_hash"]:
                raise _fail(f"{config.mlflow_run_id}: the logged strategy source does not match its recorded hash")
            try:
                stored_config = backtest_store.config(name, params["config_hash"])
            except KeyError as exc:
                raise _fail(str(exc)) from exc
            spec = StrategySpec(name=name, file=strategy_file)
            recorded = _run_backtest(
                context, spec, stored_config, params["config_hash"], arctic, freqtrade_runner, mlflow, "reproduce",
                markets_hash=params["markets_snapshot_hash"],
                data_versions={k: int(v) for k, v in json.loads(params["data_versions"]).items()},
            )
        matches = recorded.trades_hash == tags["tradai.trades_hash"]
        metadata = {
            "matches": matches,
            "original_run": dg.MetadataValue.url(mlflow.run_url(config.mlflow_run_id)),
            "original_trades_hash": tags["tradai.trades_hash"],
            **result_metadata(recorded),
        }
        if not matches:
            raise dg.Failure(
                description=f"re-running {config.mlflow_run_id} gave different trades "
                f"({recorded.trades_hash[:12]} != {tags['tradai.trades_hash'][:12]})",
                metadata=metadata,
            )
        context.add_output_metadata(metadata)
        return matches

    @dg.job(name="reproduce_backtest", description="Re-run a logged backtest from its lineage alone "
            "(config hash, strategy source, markets snapshot, candle versions) and report whether the trades match.",
            tags=aws_contract.ecs_run_tags("backtest"))
    def job():
        rerun_logged_backtest()

    return job


def build_strategies(
    directory: Path | None = None,
    entries: list[UniverseEntry] | None = None,
    base_path: Path = BASE_CONFIG_PATH,
) -> StrategyDefinitions:
    specs = discover_strategies(directory or strategies_dir())
    base = load_base_config(base_path)
    by_market = {(e.exchange, e.market_type): e for e in entries or []}
    assets, checks = [], []
    for spec in specs:
        assets += [build_config_asset(spec, base_path, by_market), build_backtest_asset(spec, base)]
        checks += build_bias_checks(spec, backtest_key(spec.name))
    by_name = {s.name: s for s in specs}
    return StrategyDefinitions(specs, assets, checks, [build_adhoc_job(by_name, base_path), build_reproduce_job()])
