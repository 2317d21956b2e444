"""Declarative automation: which strategy assets re-materialise by themselves, and when.

- ``strategies/<Name>/config`` when its strategy file changes (the asset's code version is the file's
  source hash) or when the base config's content hash changes (``strategies/base_config``);
- ``strategies/<Name>/backtest`` when its strategy file changes, when its config's or the markets
  snapshot's data version (content hash) changes, or, for a model strategy, when the champion moves
  (``strategies/<Name>/champion``); never while a blocking check of an upstream asset (the candles'
  duplicates, OHLC sanity, UTC index) has not passed, nor while an upstream run is in progress.

Only assets that were materialised once are kept up to date: a new strategy's first config and
backtest stay a person's decision. Candle syncs do not re-run backtests: a backtest pins the candle
versions it read, and re-running every strategy on every hourly sync would spend the machine on
results nobody asked for; backfill or materialise for a newer window (docs/strategies.md).

The file hash and the champion live outside Dagster; ``sensors.automation_inputs`` reports their
changes as materialisations of the two external assets, so the conditions below see them as data
versions.
"""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from tradai_core.keys import BASE_CONFIG_KEY, backtest_key, champion_key, config_key, model_key
from tradai_core.strategy_discovery import StrategySpec

AUTOMATION_SENSOR = "strategy_automation"
AUTOMATION_INTERVAL_SECONDS = 60
AC = dg.AutomationCondition


def data_changed(keys: Iterable[dg.AssetKey]) -> dg.AutomationCondition:
    """True once one of ``keys`` got a new data version since the previous tick, unless the run that
    produced it also targeted this asset (a config and its backtest re-run together on a file edit)."""
    return (
        AC.any_deps_match(AC.data_version_changed() & ~AC.executed_with_root_target())
        .allow(dg.AssetSelection.assets(*keys))
        .with_label("input_data_version_changed")
    )


def config_condition() -> dg.AutomationCondition:
    return (
        ~AC.missing()
        & (AC.code_version_changed() | data_changed([BASE_CONFIG_KEY])).since_last_handled()
        & ~AC.in_progress()
    ).with_label("strategy_config_up_to_date")


def backtest_condition(inputs: Iterable[dg.AssetKey]) -> dg.AutomationCondition:
    """``inputs``: the upstream assets whose new data versions re-run the backtest."""
    return (
        ~AC.missing()
        & (AC.code_version_changed() | data_changed(inputs)).since_last_handled()
        # A backtest reads the candles that are stored: days never synced do not hold it back.
        & ~AC.any_deps_missing().ignore(dg.AssetSelection.key_prefixes(["ohlcv"]))
        & AC.all_deps_blocking_checks_passed()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label("strategy_backtest_up_to_date")


def backtest_inputs(spec: StrategySpec, markets: dg.AssetKey) -> list[dg.AssetKey]:
    return [config_key(spec.name), markets] + ([champion_key(spec.name)] if spec.is_model else [])


def base_config_spec() -> dg.AssetSpec:
    return dg.AssetSpec(
        BASE_CONFIG_KEY,
        group_name="strategies",
        kinds={"yaml"},
        description="The base Freqtrade config every strategy config merges (tradai_assets/backtest_base.yaml); "
        "its data version is the file's content hash, reported by the automation_inputs sensor.",
    )


def champion_spec(spec: StrategySpec) -> dg.AssetSpec:
    return dg.AssetSpec(
        champion_key(spec.name),
        deps=[model_key(spec.name)],
        group_name=f"strategy_{spec.name}",
        kinds={"mlflow"},
        description=f"The version {spec.name}'s champion alias points at, from the model's audit log "
        "(promotions, rollbacks, the first version); reported by the automation_inputs sensor.",
    )


def input_specs(specs: Iterable[StrategySpec]) -> list[dg.AssetSpec]:
    return [base_config_spec()] + [champion_spec(s) for s in specs if s.is_model]


def build_automation_sensor(specs: Iterable[StrategySpec]) -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the strategies' conditions, running by default: a self-hosted
    deployment would otherwise leave Dagster's default automation sensor stopped."""
    keys = [k for s in specs for k in (config_key(s.name), backtest_key(s.name))]
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR,
        target=dg.AssetSelection.assets(*keys),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=AUTOMATION_INTERVAL_SECONDS,
        description="Re-materialises strategy configs and backtests whose inputs changed (docs/strategies.md).",
    )
