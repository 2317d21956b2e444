"""The bots routes over real HTTP (the API under uvicorn on 127.0.0.1): bots as ECS services on a moto
server, heartbeats in the local trading-state store, start and stop launched through a real Dagster
webserver, and the kill switch."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from resources.bot_services import BotSpec, EcsBotServices
from resources.bot_trades import S3BotTrades
from resources.trading_state import Heartbeat, SqliteTradingState
from tests.api_support import hs256_settings, hs256_token, queued_run, serve_api, status_of
from tests.servers import moto_credentials
from tradai_api.app import create_app
from tradai_api.auth import BOTS_READ, BOTS_WRITE, MODELS_WRITE
from tradai_api.stores import BotBackends
from tradai_assets.deployments import strategy_id
from tradai_client.client import TradaiClient

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tradai-app-dev:abc123"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("api-bots")


@pytest.fixture(scope="module")
def aws_env(moto):
    """For the whole module: its ECS cluster is built once."""
    with moto_credentials(moto) as server:
        yield server


@pytest.fixture(scope="module")
def ecs(aws_env) -> EcsBotServices:
    """An ECS cluster on the moto server with a live bot (SampleStrategy) and a dry-run bot (EmaCross)."""
    moto = aws_env
    ec2 = moto.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=f"bots-{uuid.uuid4().hex[:8]}", Description="bots", VpcId=vpc)["GroupId"]
    cluster = f"tradai-api-{uuid.uuid4().hex[:8]}"
    moto.client("ecs").create_cluster(clusterName=cluster, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    secret = moto.client("secretsmanager").create_secret(
        Name=f"tradai/dev/exchange/binance-{uuid.uuid4().hex[:8]}", SecretString=json.dumps({"key": "k", "secret": "s"})
    )["Name"]
    services = EcsBotServices(
        stack="dev", cluster=cluster, region=moto.region, endpoint_url=moto.url, subnet_ids=[subnet],
        security_group_ids=[group], execution_role_arn="arn:aws:iam::123456789012:role/tradai-dev-execution",
        task_role_arn="arn:aws:iam::123456789012:role/tradai-dev-bot", owner="quant-team", cost_center="research",
    )
    for name, mode in (("SampleStrategy", "live"), ("EmaCross", "dry_run")):
        services.reconcile(BotSpec(
            strategy=name, strategy_id=strategy_id(name), mode=mode, image=IMAGE,
            config_path=f"s3://tradai-configs-dev/bots/{strategy_id(name)}.json",
            exchange_secret=secret if mode == "live" else None,
        ))
    return services


@pytest.fixture(scope="module")
def heartbeats(root, graphql_url) -> SqliteTradingState:
    """SampleStrategy beat 20 s ago; EmaCross 4 minutes ago (stale). Written once the webserver is up
    (its start takes seconds), so the ages the tests see are close to those."""
    state = SqliteTradingState(path=str(root / "state.db"))
    now = datetime.now(UTC)
    state.put(Heartbeat(strategy_id("SampleStrategy"), "running", now - timedelta(seconds=20), open_trades=2, profit=0.0123))
    state.put(Heartbeat(strategy_id("EmaCross"), "running", now - timedelta(minutes=4), open_trades=0, profit=-0.5))
    return state


@pytest.fixture(scope="module")
def api_url(root, aws_env, ecs, heartbeats, graphql_url):
    settings = hs256_settings(root, dagster_graphql_url=graphql_url)
    with serve_api(create_app(settings, BotBackends(ecs, heartbeats, S3BotTrades(stack="dev", region=aws_env.region, endpoint_url=aws_env.url)))) as url:
        yield url


@pytest.fixture(scope="module")
def api(api_url):
    with TradaiClient(api_url, hs256_token(subject="operator-1")) as client:
        yield client


def test_list_shows_state_heartbeats_and_a_stale_bot_as_unhealthy(api):
    report = api.bots()
    assert report["max_heartbeat_age_seconds"] == 180
    bots = {b["strategy"]: b for b in report["items"]}
    live, dry = bots["SampleStrategy"], bots["EmaCross"]
    assert (live["strategy_id"], live["mode"], live["state"]) == ("sample-strategy", "live", "ACTIVE")
    assert live["backend"]["desired_count"] == 1 and live["backend"]["service_name"] == "bot-sample-strategy"
    assert live["healthy"] is True and 19 < live["heartbeat"]["age_seconds"] < 60
    assert live["heartbeat"]["open_trades"] == 2 and live["heartbeat"]["profit"] == pytest.approx(0.0123)
    assert dry["mode"] == "dry_run" and dry["healthy"] is False and dry["heartbeat"]["age_seconds"] >= 240


def test_one_bot_by_strategy_name_or_bot_id(api):
    assert api.bot("SampleStrategy")["strategy_id"] == "sample-strategy"
    assert api.bot("ema-cross")["strategy"] == "EmaCross"
    never = api.bot("RsiMeanReversion")  # a strategy without a bot
    assert (never["state"], never["heartbeat"], never["healthy"]) == ("absent", None, False)
    assert status_of(api.bot, "NoSuchStrategy") == 404


def test_a_stopped_bot_with_a_recent_heartbeat_is_not_healthy(api, heartbeats):
    heartbeats.put(Heartbeat("stopped-bot", "stopped", datetime.now(UTC) - timedelta(seconds=5), open_trades=0, profit=0.0))
    try:
        stopped = api.bot("stopped-bot")
        assert stopped["heartbeat"]["status"] == "stopped" and stopped["heartbeat"]["age_seconds"] < 60
        assert stopped["healthy"] is False
    finally:
        heartbeats.delete("stopped-bot")


def test_a_bot_paused_for_stale_candles_with_a_recent_heartbeat_is_healthy(api, heartbeats):
    heartbeats.put(Heartbeat("paused-bot", "paused", datetime.now(UTC) - timedelta(seconds=5), open_trades=1, profit=0.0))
    try:
        paused = api.bot("paused-bot")
        assert paused["heartbeat"]["status"] == "paused" and paused["healthy"] is True
    finally:
        heartbeats.delete("paused-bot")


def test_start_and_stop_launch_the_deployment_asset_with_run_config(api, graphql_url):
    started = api.start_bot("SampleStrategy", mode="live", force=True)
    assert started["asset"] == "strategies/SampleStrategy/deployment" and started["status"] == "QUEUED"
    run = queued_run(graphql_url, started["job_id"])
    assert run["assetSelection"] == [{"path": ["strategies", "SampleStrategy", "deployment"]}]
    assert run["runConfig"] == {"ops": {"strategies__SampleStrategy__deployment": {"config": {"mode": "live", "force": True}}}}
    assert run["tags"]["tradai/requested_by"] == "operator-1"

    stopped = api.stop_bot("SampleStrategy")
    config = queued_run(graphql_url, stopped["job_id"])["runConfig"]
    assert config["ops"]["strategies__SampleStrategy__deployment"]["config"] == {"mode": "stopped"}

    assert status_of(api.start_bot, "NoSuchStrategy") == 404
    assert status_of(api.start_bot, "EmaCross") == 404  # no deployment asset in the loaded code location
    assert status_of(api.start_bot, "SampleStrategy", mode="paper") == 422


def test_scopes(api_url):
    with TradaiClient(api_url, hs256_token([BOTS_READ], subject="viewer")) as viewer:
        assert viewer.bots()["items"]
        assert status_of(viewer.start_bot, "SampleStrategy") == 403
        assert status_of(viewer.stop_bot, "SampleStrategy") == 403
        assert status_of(viewer.kill_switch) == 403
    with TradaiClient(api_url, hs256_token([MODELS_WRITE, BOTS_WRITE], subject="writer")) as writer:
        assert status_of(writer.bots) == 403
        assert status_of(writer.bot, "SampleStrategy") == 403


def test_cli_bots_commands(api_url, ecs, monkeypatch):
    from click.testing import CliRunner

    from tradai_client import cli

    # One table row a line: the console took its width from the terminal (or COLUMNS) at import.
    monkeypatch.setattr(cli.console, "width", 200)
    env = {"TRADAI_API_URL": api_url, "TRADAI_API_TOKEN": hs256_token(subject="cli-user")}

    def run(*args, input=None):
        return CliRunner().invoke(cli.main, ["bots", *args], env=env, input=input, catch_exceptions=False)

    listed = run("list")
    assert listed.exit_code == 0, listed.output
    rows = {bot: line for line in listed.output.splitlines() for bot in ("sample-strategy", "ema-cross") if bot in line}
    assert " yes " in rows["sample-strategy"] and " no " in rows["ema-cross"]
    status = run("status", "EmaCross")
    assert status.exit_code == 0 and "service_name: bot-ema-cross" in status.output
    started = run("start", "SampleStrategy", "--mode", "live", "--force")
    assert started.exit_code == 0 and "strategies/SampleStrategy/deployment QUEUED" in started.output
    assert run("stop", "SampleStrategy").exit_code == 0
    declined = run("kill-switch", input="n\n")
    assert declined.exit_code == 1 and "nothing stopped" in declined.output
    assert ecs.describe("sample-strategy").desired_count == 1
    assert run("start", "NoSuchStrategy").exit_code == 1


def test_kill_switch_stops_the_live_bots_only(api, ecs):
    result = api.kill_switch()
    assert result["requested_by"] == "operator-1"
    assert [s["strategy_id"] for s in result["stopped"]] == ["sample-strategy"]
    assert [s["strategy_id"] for s in result["left_running"]] == ["ema-cross"]
    assert ecs.describe("sample-strategy").desired_count == 0
    assert ecs.describe("ema-cross").desired_count == 1
    assert api.kill_switch()["stopped"] == []  # nothing live is running any more
    everything = api.kill_switch(include_dry_run=True)
    assert [s["strategy_id"] for s in everything["stopped"]] == ["ema-cross"]
    assert ecs.describe("ema-cross").desired_count == 0


def test_a_crash_looping_ecs_bot_with_a_fresh_heartbeat_is_not_healthy():
    """A task that writes its `starting` heartbeat and dies keeps the heartbeat fresh: the backend's
    failed tasks decide."""
    from types import SimpleNamespace

    from resources.bot_services import ServiceState
    from tradai_api.routes.bots import bot_row

    svc = SimpleNamespace(bots=SimpleNamespace(bot_services=object()),
                          settings=SimpleNamespace(heartbeat_max_age_seconds=180))
    now = datetime.now(UTC)
    fresh = Heartbeat("sample-strategy", "starting", now - timedelta(seconds=5), open_trades=0, profit=0.0)

    def row(**deployment):
        state = ServiceState(strategy_id="sample-strategy", service_name="bot-sample-strategy", status="ACTIVE",
                             desired_count=1, trading_mode="live", **deployment)
        return bot_row(svc, "sample-strategy", state, fresh, now, {"sample-strategy": "SampleStrategy"})

    assert row(failed_tasks=0, rollout_state="IN_PROGRESS")["healthy"] is True
    looping = row(failed_tasks=3, rollout_state="IN_PROGRESS")
    assert looping["healthy"] is False and looping["backend"]["failed_tasks"] == 3
    tripped = row(failed_tasks=1, rollout_state="FAILED", rollout_reason="circuit breaker: task failed to start")
    assert tripped["healthy"] is False and tripped["backend"]["rollout_state"] == "FAILED"
