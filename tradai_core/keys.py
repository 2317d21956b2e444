"""Names the programs share: asset keys, ArcticDB library and symbol names, job names, bot ids, run tags."""

from __future__ import annotations

import re

import dagster as dg

from tradai_core.sweeps import SWEEP_JOB, SWEEP_TAG, SWEEP_TRIAL_ASSET_PATH  # noqa: F401 (re-exported)


def config_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["strategies", name, "config"])


def backtest_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["strategies", name, "backtest"])


def model_key(name: str) -> dg.AssetKey:
    """The training asset of a model strategy (``tradai_assets.model_training``)."""
    return dg.AssetKey(["strategies", name, "model"])


def champion_key(name: str) -> dg.AssetKey:
    """A model strategy's champion version, reported from its audit log (``sensors.automation_inputs``)."""
    return dg.AssetKey(["strategies", name, "champion"])


# The base Freqtrade config every strategy config merges (tradai_assets/backtest_base.yaml), reported
# by its content hash so that configs re-materialise when it changes.
BASE_CONFIG_KEY = dg.AssetKey(["strategies", "base_config"])

DRIFT_CHECK = "drift"  # the asset check of a model asset that measures its champion's drift
DRIFT_CHECKS_JOB = "drift_checks"


def drift_check_key(name: str) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(model_key(name), DRIFT_CHECK)


TRIGGER_TAG = "tradai/trigger"  # what asked for a deployment run: hotswap, heartbeat, kill_switch, ...
# The deployment config fields that a redeploy (hot swap, restart) carries over.
DEPLOYMENT_CONFIG_KEYS = ("mode", "exchange_secret", "stake_amount", "pairs")


def deployment_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["strategies", name, "deployment"])


def strategy_id(name: str) -> str:
    """The bot's id of a strategy class: ``SampleStrategy`` -> ``sample-strategy``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name)
    slug = re.sub(r"[^a-z0-9-]+", "-", words.lower()).strip("-")
    return re.sub(r"-{2,}", "-", slug)[:63].rstrip("-")


EVALUATE_JOB = "evaluate_challenger"
EVALUATE_OP = "backtest_and_decide"  # an op may not share its job's name


def train_job_name(name: str) -> str:
    return f"train_{name}"



# Parameter sweeps: one partition of sweeps/trial per trial (<sweep_id>-<nnnn>), one of sweeps/summary per sweep.
SWEEP_TRIAL_KEY = dg.AssetKey(list(SWEEP_TRIAL_ASSET_PATH))
SWEEP_SUMMARY_KEY = dg.AssetKey(["sweeps", "summary"])
SWEEP_TRIALS = dg.DynamicPartitionsDefinition(name="sweep_trials")
SWEEPS = dg.DynamicPartitionsDefinition(name="sweeps")
SWEEP_TRIALS_JOB = "sweep_trials"  # the asset job of sweeps/trial that the sweep sensor launches batches of
SWEEP_SUMMARY_JOB = "sweep_summary"
APPLY_SWEEP_JOB = "apply_sweep_parameters"
