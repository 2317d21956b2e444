"""Resources with a local and an AWS form share an abstract ConfigurableResource base: callers annotate
with the base, and Dagster binds either backend to it, in real runs."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from resources.bot_services import BotServices, BotState, EcsBotServices, ServiceState
from resources.bot_trades import BotTrades, LocalBotTrades, S3BotTrades
from resources.local_bots import LocalBotServices, LocalBotState
from resources.trading_state import DynamoTradingState, SqliteTradingState, TradingState
from tests.deployment_support import deploy, ecs_services, materialization, new_bucket, new_cluster, strategy
from tradai_assets.definitions import build_resources
from tradai_assets.deployments import DEPLOYMENTS_ENV, build_kill_switch_job, strategy_id

NAME = "SampleStrategy"


def test_the_bases_cannot_be_bound_themselves():
    with pytest.raises(TypeError, match="abstract class BotServices with abstract methods config_placeholder"):
        BotServices()
    with pytest.raises(TypeError, match="abstract class TradingState with abstract methods delete, get, get_pause, list, put, put_pause"):
        TradingState()


def test_a_backend_missing_part_of_the_interface_is_refused_by_name():
    class Forgetful(TradingState):
        def put(self, heartbeat): ...
        def get(self, strategy_id): ...
        def list(self): ...
        def get_pause(self, strategy_id): ...
        def put_pause(self, request): ...

    with pytest.raises(TypeError, match="abstract method delete"):
        Forgetful()


def test_both_environments_bind_the_bases(tradai_home):
    for env, services, state, trades in (("local", LocalBotServices, SqliteTradingState, LocalBotTrades),
                                         ("aws", EcsBotServices, DynamoTradingState, S3BotTrades)):
        resources = build_resources(env)
        assert isinstance(resources["bot_trades"], trades) and isinstance(resources["bot_trades"], BotTrades)
        assert isinstance(resources["bot_services"], services) and isinstance(resources["bot_services"], BotServices)
        assert isinstance(resources["trading_state"], state) and isinstance(resources["trading_state"], TradingState)
    assert issubclass(ServiceState, BotState) and issubclass(LocalBotState, BotState)


@pytest.fixture
def no_deployments_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEPLOYMENTS_ENV, str(tmp_path / "deployments.yaml"))


def _run_on(backend: BotServices, tmp_path: Path) -> None:
    """A deployment (stopping a bot never deployed) and the kill switch, both typed with the base."""
    store = BacktestStore(arctic=ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}"))
    with dg.DagsterInstance.ephemeral() as instance:
        result = deploy(instance, [strategy(NAME)], NAME, {"backtest_store": store, "bot_services": backend},
                        mode="stopped")
        assert result.success
        meta = materialization(result)
        assert (meta["mode"], meta["status"]) == ("stopped", "absent")
        assert meta["config_path"] == backend.config_placeholder(strategy_id(NAME))
        killed = build_kill_switch_job([strategy(NAME)]).execute_in_process(
            instance=instance, resources={"bot_services": backend})
        assert killed.success and killed.output_for_node("stop_live_bots") == []


def test_the_deployment_and_kill_switch_run_on_local_bots(tmp_path, no_deployments_file):
    _run_on(LocalBotServices(home=str(tmp_path / "home")), tmp_path)


def test_the_deployment_and_kill_switch_run_on_ecs_services(tmp_path, no_deployments_file, aws_env, network):
    _run_on(ecs_services(aws_env, new_cluster(aws_env), network, new_bucket(aws_env)), tmp_path)
