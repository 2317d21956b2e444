"""A strategy's Freqtrade config: the base config, the strategy's own overrides, then a run's overrides.

Validated by Freqtrade's own config schema and validator; override keys the schema does not know are
refused (Freqtrade itself would silently ignore a misspelt key). Content-hashed for lineage.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from tradai_core import settings
from tradai_core.candles import timeframe_delta
from tradai_core.strategy_discovery import StrategySpec
from tradai_core.sweeps import STRATEGY_PARAMETERS_KEY

BASE_CONFIG_PATH = settings.CODE_LOCATION_DIR / "backtest_base.yaml"
# Keys Freqtrade reads from a config file although its schema does not list them, and the strategy's
# hyperopt parameter values ({space: {name: value}}), which reach Freqtrade as its parameter file.
EXTRA_KNOWN_KEYS = {"timerange", STRATEGY_PARAMETERS_KEY}
TIMERANGE_ALL = "all"


class ConfigError(ValueError):
    """An invalid config; the message names the key at fault."""


def load_base_config(path: Path = BASE_CONFIG_PATH) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the base backtest config ({exc})") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the base backtest config must be a mapping of Freqtrade keys")
    return config


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref and ref.startswith("#/definitions/"):
        return _resolve(root["definitions"][ref.removeprefix("#/definitions/")], root)
    return schema


def unknown_keys(overrides: dict[str, Any], schema: dict[str, Any], root: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of override keys that the schema does not declare where it declares its keys."""
    schema = _resolve(schema, root)
    known = schema.get("properties")
    if known is None or schema.get("additionalProperties") not in (None, False) or "patternProperties" in schema:
        return []  # a free-form mapping (e.g. ccxt_config, minimal_roi): any key is legitimate
    out = []
    for key, value in overrides.items():
        path = f"{prefix}{key}"
        if key not in known and not (prefix == "" and key in EXTRA_KNOWN_KEYS):
            out.append(path)
        elif isinstance(value, dict) and key in known:
            out += unknown_keys(value, known[key], root, f"{path}.")
    return out


def check_override_keys(overrides: dict[str, Any], source: str) -> None:
    from freqtrade.config_schema.config_schema import CONF_SCHEMA

    unknown = unknown_keys(overrides, CONF_SCHEMA, CONF_SCHEMA)
    if unknown:
        raise ConfigError(f"{source}: unknown Freqtrade config key(s) {', '.join(unknown)}")


def validate_config(config: dict[str, Any]) -> None:
    """Freqtrade's schema for a backtest config before the strategy fills stoploss and ROI."""
    from freqtrade.config_schema.config_schema import (
        CONF_SCHEMA,
        SCHEMA_BACKTEST_REQUIRED,
    )
    from freqtrade.configuration.config_validation import FreqtradeValidator
    from jsonschema.exceptions import best_match

    schema = {**copy.deepcopy(CONF_SCHEMA), "required": SCHEMA_BACKTEST_REQUIRED}
    # The validator fills schema defaults in place: validate a copy so the stored config stays as written.
    error = best_match(FreqtradeValidator(schema).iter_errors(copy.deepcopy(config)))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"config key {where}: {error.message}")
    parameters = config.get(STRATEGY_PARAMETERS_KEY, {})
    if not isinstance(parameters, dict) or not all(isinstance(v, dict) for v in parameters.values()):
        raise ConfigError(f"config key {STRATEGY_PARAMETERS_KEY}: {parameters!r} is not a mapping of "
                          "space -> {parameter: value}")
    timerange = config.get("timerange", TIMERANGE_ALL)
    if not isinstance(timerange, str):
        raise ConfigError(f"config key timerange: {timerange!r} is not a string")
    try:
        timeframe_delta(str(config.get("timeframe")))
    except ValueError as exc:
        raise ConfigError(f"config key timeframe: {exc}") from exc


def build_strategy_config(
    base: dict[str, Any], spec: StrategySpec, run_overrides: dict[str, Any]
) -> dict[str, Any]:
    """Base config, then the strategy's timeframe, pairs and config_overrides, then the run's overrides."""
    check_override_keys(spec.config_overrides, f"{spec.file}: {spec.name}.config_overrides")
    check_override_keys(run_overrides, "run config overrides")
    from_strategy: dict[str, Any] = {}
    if spec.timeframe is not None:
        # Freqtrade lets the config's timeframe win over the strategy's: the strategy's must win here.
        from_strategy["timeframe"] = spec.timeframe
    if spec.pairs is not None:
        from_strategy["exchange"] = {"pair_whitelist": spec.pairs}
    config = deep_merge(deep_merge(deep_merge(base, from_strategy), spec.config_overrides), run_overrides)
    validate_config(config)
    return config


def market_type(config: dict[str, Any]) -> str:
    return "futures" if config.get("trading_mode", "spot") == "futures" else "spot"
