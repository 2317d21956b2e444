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
from resources.model_registry import CHAMPION, ModelRegistry, ModelRegistryError
from tradai_assets.automation import backtest_condition, backtest_inputs, config_condition, input_specs
from tradai_assets.backtests import (
    BacktestInputError,
    RecordedBacktest,
    plan_backtest,
    result_metadata,
    run_and_record,
)
from tradai_assets.bias_checks import build_bias_checks
from tradai_assets.market_data import content_hash
from tradai_core import settings
from tradai_core.keys import BASE_CONFIG_KEY, backtest_key, champion_key, config_key, model_key
from tradai_core.strategy_config import (
    BASE_CONFIG_PATH,
    ConfigError,
    build_strategy_config,
    load_base_config,
    market_type,
)
from tradai_core.strategy_discovery import (
    StrategySpec,
    discover_strategies,
    source_hash,
)
from tradai_core.universe import UniverseEntry


def strategies_dir() -> Path:
    return Path(os.environ.get("TRADAI_STRATEGIES", settings.REPO_ROOT / "strategies")).resolve()


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


def resolve_model(spec_name: str, registry: ModelRegistry, version: int | None = None, alias: str = CHAMPION) -> dict[str, Any]:
    """The model a backtest of a model strategy runs with, pinned to a version at the start:
    ``version`` when given (it must exist), else the version ``alias`` points at now. Handed to the
    strategy as config["tradai_model"]."""
    try:
        if version is None:
            resolved = registry.version(spec_name, alias)
        else:
            registry._require_version(spec_name, int(version), f"backtesting {spec_name} version {version}")
            resolved = int(version)
    except ModelRegistryError as exc:
        raise _fail(f"{spec_name}: cannot resolve the model to backtest with: {exc}") from exc
    return {"name": spec_name, "version": resolved, "tracking_uri": registry.tracking_uri}


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


def backtest_model_version(
    log,
    spec: StrategySpec,
    version: int,
    timerange: str,
    arctic: ArcticStore,
    backtest_store: BacktestStore,
    runner: FreqtradeRunner,
    mlflow: MlflowTracker,
    registry: ModelRegistry,
    kind: str,
    data_versions: dict[str, int] | None = None,
    markets_hash: str | None = None,
    base_path: Path = BASE_CONFIG_PATH,
    tags: dict[str, str] | None = None,
) -> RecordedBacktest:
    """Backtest a model strategy with one model version on ``timerange``, with the strategy's own config
    (base config and its overrides, no run overrides), logged to MLflow as ``kind`` with the version in
    its lineage; the config is stored by hash, so ``reproduce_backtest`` can re-run it. Pass the
    ``data_versions`` and ``markets_hash`` of a first run to backtest another version on exactly the
    same inputs. Bad input raises dg.Failure naming the strategy; ``log`` is a logger (``context.log``)."""
    config = _config_for(spec, load_base_config(base_path), {"timerange": timerange})
    digest = content_hash(config)
    backtest_store.write_config(spec.name, config, digest)
    model = resolve_model(spec.name, registry, version)
    try:
        plan = plan_backtest(arctic, spec.name, spec.file, config, digest, markets_hash=markets_hash,
                             data_versions=data_versions, model=model)
        for warning in plan.warnings:
            log.warning(warning)
        recorded = run_and_record(plan, runner, mlflow, kind, dict(tags or {}))
    except (BacktestInputError, BacktestError, KeyError) as exc:
        raise _fail(f"{spec.name} version {version}: {exc}") from exc
    if len(recorded.outcome.trades) == 0:
        recorded.plan.warnings.append("the backtest made no trades")
        log.warning(f"{spec.name} version {version}: the backtest made no trades")
    return recorded


def build_config_asset(spec: StrategySpec, base_path: Path, entries: dict[tuple[str, str], UniverseEntry]) -> dg.AssetsDefinition:
    @dg.asset(
        key=config_key(spec.name),
        group_name=f"strategy_{spec.name}",
        kinds={"freqtrade"},
        code_version=spec.code_version,
        deps=[BASE_CONFIG_KEY],
        automation_condition=config_condition(),
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

    markets = dg.AssetKey(["markets", exchange, mtype])
    deps = [config_key(spec.name), markets, dg.AssetKey(["ohlcv", exchange, mtype])]
    if spec.is_model:
        deps += [model_key(spec.name), champion_key(spec.name)]
        description += (" The model version is resolved from the alias champion at the start and recorded "
                        "(model_name, model_version), so the backtest reproduces after the alias moves.")

    def materialise(context, arctic, backtest_store, freqtrade_runner, mlflow, registry):
        if spec.problem:
            raise _fail(spec.problem)
        stored = backtest_store.latest_config(spec.name)
        if stored is None:
            raise _fail(f"{spec.name}: no stored config; materialise {config_key(spec.name).to_user_string()} first")
        config, digest = stored
        pinned = {} if registry is None else {"model": resolve_model(spec.name, registry)}
        if pinned:
            context.log.info(f"{spec.name}: backtesting model version {pinned['model']['version']} ({CHAMPION})")
        recorded = _run_backtest(context, spec, config, digest, arctic, freqtrade_runner, mlflow, "canonical", **pinned)
        lineage = {**recorded.plan.lineage(), "mlflow_run_id": recorded.run_id, "trades_hash": recorded.trades_hash}
        backtest_store.write_backtest(spec.name, recorded.outcome.trades, recorded.equity, recorded.outcome.stats, lineage)
        return dg.MaterializeResult(data_version=dg.DataVersion(recorded.trades_hash), metadata=result_metadata(recorded))

    decorate = dg.asset(
        key=backtest_key(spec.name),
        group_name=f"strategy_{spec.name}",
        kinds={"freqtrade", "mlflow"},
        code_version=spec.code_version,
        deps=deps,
        automation_condition=backtest_condition(backtest_inputs(spec, markets)),
        description=description,
        metadata=spec.ui_metadata(),
        tags=aws_contract.ecs_run_tags("backtest"),
    )
    if spec.is_model:
        @decorate
        def model_backtest(
            context: dg.AssetExecutionContext,
            arctic: ArcticStore,
            backtest_store: BacktestStore,
            freqtrade_runner: FreqtradeRunner,
            mlflow: MlflowTracker,
            model_registry: ModelRegistry,
        ):
            return materialise(context, arctic, backtest_store, freqtrade_runner, mlflow, model_registry)

        return model_backtest

    @decorate
    def backtest(
        context: dg.AssetExecutionContext,
        arctic: ArcticStore,
        backtest_store: BacktestStore,
        freqtrade_runner: FreqtradeRunner,
        mlflow: MlflowTracker,
    ):
        return materialise(context, arctic, backtest_store, freqtrade_runner, mlflow, None)

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
    model_version: int | None = None
    """Model strategies: the model version to backtest with (default: the version ``model_alias`` points at)."""
    model_alias: str = CHAMPION
    """Model strategies: the alias resolved at the start when no model_version is given."""

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
    assets: list[dg.AssetsDefinition | dg.AssetSpec]
    checks: list[dg.AssetChecksDefinition]
    jobs: list[dg.JobDefinition]


def _backtest_op(name: str, config_type: type[dg.Config], run, models: bool) -> dg.OpDefinition:
    """An op that backtests with ``run``; it takes the model registry only where model strategies exist,
    so that a code location without them (and without a registry) still loads."""
    if models:
        @dg.op(name=name)
        def with_models(
            context: dg.OpExecutionContext,
            config: config_type,
            arctic: ArcticStore,
            backtest_store: BacktestStore,
            freqtrade_runner: FreqtradeRunner,
            mlflow: MlflowTracker,
            model_registry: ModelRegistry,
        ):
            return run(context, config, arctic, backtest_store, freqtrade_runner, mlflow, model_registry)

        return with_models

    @dg.op(name=name)
    def without_models(
        context: dg.OpExecutionContext,
        config: config_type,
        arctic: ArcticStore,
        backtest_store: BacktestStore,
        freqtrade_runner: FreqtradeRunner,
        mlflow: MlflowTracker,
    ):
        return run(context, config, arctic, backtest_store, freqtrade_runner, mlflow, None)

    return without_models


def build_adhoc_job(specs: dict[str, StrategySpec], base_path: Path) -> dg.JobDefinition:
    def run(context, config: AdhocBacktestConfig, arctic, backtest_store, freqtrade_runner, mlflow, registry):
        spec = specs.get(config.strategy)
        if spec is None:
            raise _fail(f"unknown strategy {config.strategy!r}; known: {', '.join(sorted(specs)) or 'none'}")
        merged = _config_for(spec, load_base_config(base_path), config.as_overrides())
        digest = content_hash(merged)
        backtest_store.write_config(spec.name, merged, digest)
        pinned = {}
        if spec.is_model:
            pinned["model"] = resolve_model(spec.name, registry, config.model_version, config.model_alias)
            context.log.info(f"{spec.name}: backtesting model version {pinned['model']['version']}")
        recorded = _run_backtest(context, spec, merged, digest, arctic, freqtrade_runner, mlflow, "adhoc", **pinned)
        context.add_output_metadata(result_metadata(recorded))
        return recorded.run_id

    backtest_with_overrides = _backtest_op(
        "backtest_with_overrides", AdhocBacktestConfig, run, any(spec.is_model for spec in specs.values()))

    @dg.job(name="adhoc_backtest", description="A backtest with run-config overrides, logged to MLflow; "
            "the canonical strategies/<Name>/backtest asset is left as it is.", tags=aws_contract.ecs_run_tags("backtest"))
    def job():
        backtest_with_overrides()

    return job


def build_reproduce_job(models: bool = False) -> dg.JobDefinition:
    """The reproduce job; with ``models``, it also re-runs backtests of model strategies (with the
    model version they recorded), which needs the ``model_registry`` resource."""

    def run(context, config: ReproduceConfig, arctic, backtest_store, freqtrade_runner, mlflow, registry):
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
            pinned = {}
            if "model_name" in params:
                if registry is None:
                    raise _fail(f"{config.mlflow_run_id}: a backtest of model {params['model_name']} needs the "
                                "model_registry resource to be reproduced")
                pinned["model"] = resolve_model(params["model_name"], registry, int(params["model_version"]))
            recorded = _run_backtest(
                context, spec, stored_config, params["config_hash"], arctic, freqtrade_runner, mlflow, "reproduce",
                markets_hash=params["markets_snapshot_hash"],
                data_versions={k: int(v) for k, v in json.loads(params["data_versions"]).items()},
                **pinned,
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

    rerun_logged_backtest = _backtest_op("rerun_logged_backtest", ReproduceConfig, run, models)

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
    from tradai_assets.model_training import build_model_assets

    assets += build_model_assets(specs, entries, base_path)
    assets += input_specs(specs)
    by_name = {s.name: s for s in specs}
    models = any(s.is_model for s in specs)
    return StrategyDefinitions(specs, assets, checks, [build_adhoc_job(by_name, base_path), build_reproduce_job(models)])
