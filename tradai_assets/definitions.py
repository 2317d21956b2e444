"""The code location: every asset, check, job and schedule, with the resources of one environment.

``TRADAI_ENV`` (``local`` by default, or ``aws``) picks the resource instances; nothing else differs.
"""

from __future__ import annotations

import os

import dagster as dg

from resources.arctic import ArcticStore
from resources.aws_contract import EnvVar
from resources.backtest_store import BacktestStore
from resources.bot_services import EcsBotServices
from resources.bot_trades import LocalBotTrades, S3BotTrades
from resources.exchange import ExchangeResource
from resources.freqtrade_runner import FreqtradeRunner
from resources.local_bots import LocalBotServices
from resources.mlflow_tracker import MlflowTracker
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from resources.sweep_store import SweepStore
from resources.sweep_studies import SweepStudies
from resources.trading_state import DynamoTradingState, SqliteTradingState
from sensors.automation_inputs import build_automation_inputs_sensor
from sensors.bots import build_bot_sensors
from sensors.local_exchange import build_local_exchange_sensor
from sensors.models import build_model_sensors
from sensors.stale_data import build_stale_data_sensor
from sensors.sweeps import build_sweep_sensor
from tradai_assets.automation import build_automation_sensor
from tradai_assets.deployments import build_deployment_assets, build_kill_switch_job
from tradai_assets.divergence import build_divergence_assets
from tradai_assets.local_exchange_sync import local_exchange_url, sync_local_exchange_candles
from tradai_assets.market_data import build_market_data
from tradai_assets.model_drift import build_model_drift
from tradai_assets.model_lifecycle import build_model_lifecycle, train_jobs
from tradai_assets.model_shadow import shadow_jobs
from tradai_assets.strategies import build_strategies
from tradai_assets.sweeps import build_sweeps
from tradai_assets.walk_forward import build_walk_forward_assets
from tradai_core import settings
from tradai_core.strategy_config import load_base_config
from tradai_core.universe import load_universe


def _listed(name: str) -> list[str]:
    return [item for item in os.environ.get(name, "").split(",") if item]


def build_resources(env: str) -> dict[str, dg.ConfigurableResource]:
    webhook = os.environ.get(EnvVar.NOTIFY_WEBHOOK_URL) or None
    if env == "aws":
        arctic = ArcticStore(uri=dg.EnvVar(EnvVar.ARCTICDB_URI))
        mlflow = MlflowTracker(tracking_uri=dg.EnvVar(EnvVar.MLFLOW_TRACKING_URI), ui_url=dg.EnvVar(EnvVar.MLFLOW_UI_URL))
        registry = ModelRegistry(tracking_uri=dg.EnvVar(EnvVar.MLFLOW_TRACKING_URI), store=arctic)
        notifier = Notifier(sns_topic_arn=dg.EnvVar(EnvVar.ALERTS_TOPIC_ARN), webhook_url=webhook)
        bot_services = EcsBotServices(
            stack=dg.EnvVar(EnvVar.TRADAI_STACK),
            cluster=dg.EnvVar(EnvVar.ECS_CLUSTER),
            subnet_ids=_listed(EnvVar.RUN_SUBNET_IDS),
            security_group_ids=_listed(EnvVar.RUN_SECURITY_GROUP_IDS),
            execution_role_arn=dg.EnvVar(EnvVar.ECS_EXECUTION_ROLE_ARN),
            task_role_arn=dg.EnvVar(EnvVar.BOT_TASK_ROLE_ARN),
            owner=dg.EnvVar(EnvVar.OWNER),
            cost_center=dg.EnvVar(EnvVar.COST_CENTER),
            image=dg.EnvVar(EnvVar.BOT_IMAGE),
        )
        trading_state = DynamoTradingState(stack=dg.EnvVar(EnvVar.TRADAI_STACK))
        sweep_studies = SweepStudies(storage_url=dg.EnvVar(EnvVar.SWEEP_STORAGE_URL))
        bot_trades = S3BotTrades(stack=dg.EnvVar(EnvVar.TRADAI_STACK))
    else:
        arctic = ArcticStore(uri=settings.local_arctic_uri())
        mlflow = MlflowTracker(
            tracking_uri=settings.local_mlflow_uri(),
            artifact_root=str(settings.tradai_home() / "mlartifacts"),
            ui_url=settings.local_mlflow_ui_url(),
        )
        registry = ModelRegistry(tracking_uri=settings.local_mlflow_uri(), store=arctic)
        notifier = Notifier(webhook_url=webhook)
        bot_services = LocalBotServices()
        trading_state = SqliteTradingState()
        sweep_studies = SweepStudies(storage_url=settings.local_sweep_storage_url())
        bot_trades = LocalBotTrades()
    return {
        "arctic": arctic,
        "exchange": ExchangeResource(),
        "backtest_store": BacktestStore(arctic=arctic),
        "freqtrade_runner": FreqtradeRunner(),
        "mlflow": mlflow,
        "model_registry": registry,
        "notifier": notifier,
        "bot_services": bot_services,
        "trading_state": trading_state,
        "sweep_store": SweepStore(arctic=arctic),
        "sweep_studies": sweep_studies,
        "bot_trades": bot_trades,
    }


def build_definitions() -> dg.Definitions:
    env = settings.tradai_env()
    universe = load_universe(settings.universe_path())
    market_data = build_market_data(universe.markets, schedules_running=env == "aws")
    strategies = build_strategies(entries=universe.markets)
    specs = strategies.specs
    model_jobs, model_schedules = build_model_lifecycle(specs)
    drift_checks, drift_jobs, drift_schedules = build_model_drift(specs)
    sweeps = build_sweeps(specs)
    # make dev's bots trade on the local simulated exchange: its candles are kept for their divergence reports.
    local_sync = [sync_local_exchange_candles] if env == "local" and local_exchange_url() else []
    return dg.Definitions(
        assets=market_data.assets
        + strategies.assets
        + build_deployment_assets(specs)
        + build_walk_forward_assets(specs, load_base_config())
        + sweeps.assets
        + build_divergence_assets(specs),
        asset_checks=market_data.checks + strategies.checks + drift_checks,
        jobs=market_data.jobs + strategies.jobs + model_jobs + drift_jobs + shadow_jobs(specs)
        + [build_kill_switch_job(specs)] + sweeps.jobs + local_sync,
        schedules=market_data.schedules + model_schedules + drift_schedules,
        sensors=build_model_sensors(specs, train_jobs(specs))
        + build_bot_sensors(specs)
        + [build_stale_data_sensor(specs), build_sweep_sensor(sweeps.sensor_jobs)]
        + [build_automation_inputs_sensor(specs), build_automation_sensor(specs)]
        + [build_local_exchange_sensor(specs, job.name) for job in local_sync],
        resources=build_resources(env),
    )


defs = build_definitions()
