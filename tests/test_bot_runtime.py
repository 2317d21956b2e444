"""`tradai run-bot`: a real freqtrade dry run on the fake Binance, warm-up from ArcticDB, heartbeats in
SQLite and in DynamoDB on moto, the crash loop, bad environment and config, keys kept out of logs, and the
bot image's Dockerfile."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from resources import aws_contract
from resources.arctic import ArcticStore
from resources.bot_services import BotSpec
from resources.local_bots import LocalBotServices
from resources.trading_state import DynamoTradingState, PauseRequest, SqliteTradingState
from tests.deployment_support import text
from tests.fakes.client import FakeBinance
from tests.servers import wait_for
from tradai_bot.runtime import (
    LOCAL_EXCHANGE_URL,
    BotRuntimeError,
    BotSettings,
    check_exchange_keys,
    load_config,
    local_exchange_config,
    resolve_model,
    strategy_is_model,
    trading_state,
)
from tradai_core.candles import candle_symbol, frame_from_rows

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRADAI = str(Path(sys.executable).parent / "tradai")
KEY, SECRET = "k3y-NEVER-LOGGED-7f3a", "s3cr3t-NEVER-LOGGED-91c2"
PAIRS = ["ETH/BTC", "LTC/BTC"]
STARTUP = 1500  # more than one klines call (1000 candles on Binance spot): freqtrade would make two per pair
WARM = 1000 + STARTUP  # what freqtrade keeps per pair: one call's candles plus the startup candles
STRATEGY = f'''
import logging
from freqtrade.strategy import IStrategy

logger = logging.getLogger(__name__)


class WarmStrategy(IStrategy):
    timeframe = "5m"
    startup_candle_count = {STARTUP}
    minimal_roi = {{"0": 0.5}}
    stoploss = -0.2

    def populate_indicators(self, dataframe, metadata):
        logger.info("analysed %s rows=%d", metadata["pair"], len(dataframe))
        dataframe["slow"] = dataframe["close"].rolling({STARTUP}).mean()
        return dataframe

    def populate_entry_trend(self, dataframe, metadata):
        dataframe["enter_long"] = (dataframe["close"] > 0).astype(int)
        return dataframe

    def populate_exit_trend(self, dataframe, metadata):
        dataframe["exit_long"] = 0
        return dataframe
'''
MODEL_STRATEGY = '''
from tradai_core.model_strategy import ModelStrategy


class WarmModel(ModelStrategy):
    timeframe = "5m"
    model_settings = {"label_horizon": 3}
'''


@pytest.fixture
def strategies(tmp_path: Path) -> Path:
    directory = tmp_path / "strategies"
    directory.mkdir()
    (directory / "WarmStrategy.py").write_text(STRATEGY)
    (directory / "WarmModel.py").write_text(MODEL_STRATEGY)
    return directory


def bot_config(fake: FakeBinance | None, path: Path) -> Path:
    """A bot config on ``fake``'s URLs; with ``fake=None`` a plain Binance config (the real exchange's URLs)."""
    exchange: dict = {"name": "binance", "key": "", "secret": "", "pair_whitelist": PAIRS}
    if fake is not None:
        urls = fake.ccxt_config("spot")["urls"]
        exchange |= {"ccxt_config": {"urls": urls}, "ccxt_async_config": {"urls": urls},
                     "enable_ws": False, "only_from_ccxt": True}
    path.write_text(json.dumps({
        "exchange": exchange,
        "stake_currency": "BTC", "stake_amount": 0.01, "dry_run": False, "dry_run_wallet": 1,
        "max_open_trades": 2, "timeframe": "5m", "pairlists": [{"method": "StaticPairList"}],
        "entry_pricing": {"price_side": "same", "use_order_book": False, "order_book_top": 1,
                          "price_last_balance": 0.0,
                          "check_depth_of_market": {"enabled": False, "bids_to_ask_delta": 1}},
        "exit_pricing": {"price_side": "same", "use_order_book": False, "order_book_top": 1},
        "internals": {"heartbeat_interval": 1, "process_throttle_secs": 1},
        "initial_state": "running",
    }))
    return path


def seed_candles(arctic: ArcticStore, fake: FakeBinance, lag_candles: int = 6) -> None:
    """The fake exchange's 5m candles into ArcticDB, the newest ``lag_candles`` not synced yet."""
    step = 300_000
    last_closed = (int(time.time() * 1000) // step - 1) * step - lag_candles * step
    start = last_closed - (WARM + 50) * step
    for pair in PAIRS:
        rows: list[list] = []
        since = start
        while since <= last_closed:
            page = httpx.get(f"{fake.url}/api/v3/klines", params={
                "symbol": pair.replace("/", ""), "interval": "5m", "startTime": since,
                "endTime": last_closed, "limit": 1000,
            }).json()
            rows += [[float(v) for v in row[:6]] for row in page]
            since = int(page[-1][0]) + step
        frame = frame_from_rows(rows, "spot")
        arctic.replace_window(
            "binance", "spot", candle_symbol(pair, "5m", "spot"), frame,
            frame.index[0], frame.index[-1] + pd.Timedelta(minutes=5), {"source": "test"},
        )


def analysed_rows(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"analysed \S+ rows=(\d+)", log)]


def bot_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_VERSION"}  # freqtrade skips its log file under pytest
    env.update(extra)
    return env


# --- a real freqtrade dry run, supervised locally ----------------------------------------------------


@pytest.fixture
def services(
    tradai_home: Path, strategies: Path, tmp_path: Path, fake_binance_clean: FakeBinance
) -> Iterator[LocalBotServices]:
    """Local bots on the local simulated exchange (``exchange_url``), as ``make dev`` runs them."""
    made = LocalBotServices(
        strategies_dir=str(strategies), arctic_uri=f"lmdb://{tmp_path / 'arctic'}", heartbeat_seconds=1,
        restart_delay_seconds=0.1, stop_timeout_seconds=60, exchange_url=fake_binance_clean.url,
    )
    yield made
    for bot in made.list_bots():
        made.delete(bot.strategy_id)


def test_a_local_dry_run_bot_warms_up_from_arcticdb_heartbeats_and_stops_cleanly(
    services: LocalBotServices, fake_binance_clean: FakeBinance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("PYTEST_VERSION", raising=False)
    monkeypatch.setenv(aws_contract.EnvVar.EXCHANGE_KEY, KEY)
    monkeypatch.setenv(aws_contract.EnvVar.EXCHANGE_SECRET, SECRET)
    seed_candles(ArcticStore(uri=services.arctic_uri), fake_binance_clean)
    requests_before = fake_binance_clean.requests_made()
    candles_before = fake_binance_clean.candles_served("ETHBTC", interval="5m")
    # No exchange URLs in the config: the bot reaches the local exchange through exchange_url alone.
    config = bot_config(None, tmp_path / "config.json")
    spec = BotSpec(strategy="WarmStrategy", strategy_id="warm-local", mode="dry_run", image="local",
                   config_path=str(config), stake_amount=0.01, pairs=tuple(PAIRS))
    store = SqliteTradingState(path=str(services.bots_dir / "state.db"))
    bot_dir = services.bot_dir("warm-local")

    services.reconcile(spec)
    first = wait_for(lambda: (b := store.get("warm-local")) and b.status == "running" and b, 120, "a running heartbeat")
    wait_for(lambda: len(analysed_rows(text(bot_dir / "freqtrade.log"))) >= len(PAIRS), 60, "the first analysis")
    later = wait_for(lambda: (b := store.get("warm-local")) and b.last_heartbeat > first.last_heartbeat and b,
                     60, "a second heartbeat")
    assert later.status == "running" and later.open_trades >= 0

    log = text(bot_dir / "freqtrade.log")
    assert f"warm-up: {WARM * len(PAIRS)} candles of {len(PAIRS)} series from ArcticDB" in log
    # Freqtrade analysed the stored history joined to the newest candles: more than the 2 calls
    # (2000 candles) it would have downloaded without the warm-up.
    assert min(analysed_rows(log)[: len(PAIRS)]) == WARM
    assert "Time jump detected" not in log
    assert "Dry run is enabled" in log
    console = " ".join(text(bot_dir / "bot.log").split())  # the console output is wrapped to the terminal
    assert f"bot warm-local trades against the local simulated exchange at {fake_binance_clean.url}" in console
    assert fake_binance_clean.candles_served("ETHBTC", interval="5m") > candles_before
    assert fake_binance_clean.requests_made() > requests_before
    launch = json.loads((bot_dir / "launch.json").read_text())
    assert launch["environment"][LOCAL_EXCHANGE_URL] == fake_binance_clean.url
    [bot] = services.list_bots()
    assert (bot.strategy_id, bot.status) == ("warm-local", "running")
    processes = [psutil.Process(bot.supervisor_pid), psutil.Process(bot.bot_pid)]

    # The platform's pause request (the stale-data sensor's): Freqtrade's own paused state, entries
    # stopped, the same process still trading; then resumed.
    store.put_pause(PauseRequest("warm-local", True, "ETH/BTC 5m candles stale", datetime.now(UTC)))
    paused = wait_for(lambda: (b := store.get("warm-local")) and b.status == "paused" and b, 60, "a paused heartbeat")
    wait_for(lambda: "Changing state from RUNNING to: PAUSED" in text(bot_dir / "freqtrade.log"), 30, "freqtrade paused")
    wait_for(lambda: (b := store.get("warm-local")) and b.last_heartbeat > paused.last_heartbeat
             and b.status == "paused", 30, "a later heartbeat, still paused")
    assert "entries paused by the platform (ETH/BTC 5m candles stale)" in text(bot_dir / "freqtrade.log")
    store.put_pause(PauseRequest("warm-local", False, "candles fresh", datetime.now(UTC)))
    wait_for(lambda: (b := store.get("warm-local")) and b.status == "running" and b.last_heartbeat > paused.last_heartbeat,
             60, "a running heartbeat after the resume")
    wait_for(lambda: "Changing state from PAUSED to: RUNNING" in text(bot_dir / "freqtrade.log"), 30, "freqtrade resumed")
    assert [p.pid for p in processes] == [bot.supervisor_pid, bot.bot_pid] and all(p.is_running() for p in processes)
    assert services.describe("warm-local").bot_pid == bot.bot_pid  # paused and resumed without a restart

    stopped = services.reconcile(BotSpec(**{**spec.__dict__, "mode": "stopped"}))

    assert stopped.status == "stopped"
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes)
    final = store.get("warm-local")
    assert final.status == "stopped" and final.last_heartbeat >= later.last_heartbeat
    assert "bot warm-local: stopped (exit code 0)" in text(bot_dir / "freqtrade.log")
    for path in bot_dir.rglob("*"):
        if path.is_file() and path.suffix != ".sqlite":
            assert KEY not in text(path) and SECRET not in text(path), path


# --- AWS: config from S3, warm-up from ArcticDB on S3, heartbeats in DynamoDB --------------------------


def test_heartbeats_reach_dynamodb_with_the_config_from_s3(
    moto, fake_binance: FakeBinance, strategies: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto.secret_key)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    table = f"{aws_contract.trading_state_table('dev')}-{uuid.uuid4().hex[:8]}"
    moto.client("dynamodb").create_table(
        TableName=table,
        KeySchema=[{"AttributeName": aws_contract.TABLE_PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": aws_contract.TABLE_PARTITION_KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    bucket = f"configs-{uuid.uuid4().hex[:8]}"
    moto.client("s3").create_bucket(Bucket=bucket)
    config = bot_config(fake_binance, tmp_path / "config.json")
    moto.client("s3").put_object(Bucket=bucket, Key="bots/warm-aws.json", Body=config.read_bytes())
    arctic_bucket = f"arctic-{uuid.uuid4().hex[:8]}"
    moto.client("s3").create_bucket(Bucket=arctic_bucket)
    seed_candles(ArcticStore(uri=moto.arctic_uri(arctic_bucket)), fake_binance)
    E = aws_contract.EnvVar
    env = bot_env(**{
        E.STRATEGY: "WarmStrategy", E.STRATEGY_ID: "warm-aws", E.TRADING_MODE: "dry_run",
        E.CONFIG_PATH: f"s3://{bucket}/bots/warm-aws.json", E.DYNAMODB_TABLE: table,
        E.ARCTICDB_S3_URI: moto.arctic_uri(arctic_bucket), E.MLFLOW_TRACKING_URI: "http://127.0.0.1:9",
        E.TRADAI_ENV: "aws", E.AWS_REGION: moto.region, "AWS_ENDPOINT_URL": moto.url,
        "AWS_ACCESS_KEY_ID": moto.access_key, "AWS_SECRET_ACCESS_KEY": moto.secret_key,
        "TRADAI_HEARTBEAT_SECONDS": "1", E.EXCHANGE_KEY: KEY, E.EXCHANGE_SECRET: SECRET,
    })
    store = DynamoTradingState(stack="dev", table=table, region=moto.region, endpoint_url=moto.url)
    output = tmp_path / "bot.out"
    with open(output, "wb") as out:
        bot = subprocess.Popen(
            [TRADAI, "run-bot", "--strategy-path", str(strategies), "--workdir", str(tmp_path / "work")],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )
    try:
        first = wait_for(lambda: (b := store.get("warm-aws")) and b.status == "running" and b, 120, "a heartbeat")
        wait_for(lambda: (b := store.get("warm-aws")) and b.last_heartbeat > first.last_heartbeat, 15, "another")
        bot.send_signal(signal.SIGTERM)
        assert bot.wait(timeout=30) == 0
    finally:
        if bot.poll() is None:
            bot.kill()
    final = store.get("warm-aws")
    assert final.status == "stopped" and final.last_heartbeat > first.last_heartbeat
    log = text(output)
    assert f"warm-up: {WARM * len(PAIRS)} candles" in log
    assert KEY not in log and SECRET not in log
    assert json.loads((tmp_path / "work" / "config.json").read_text())["exchange"]["key"] == ""
    assert (tmp_path / "work" / "tradesv3.dryrun.sqlite").is_file()


# --- crash loop -----------------------------------------------------------------------------------


def test_a_bot_in_a_crash_loop_ends_failed_after_the_restart_limit(tradai_home: Path, tmp_path: Path, strategies):
    config = tmp_path / "broken.json"
    config.write_text('{"exchange": ')
    services = LocalBotServices(strategies_dir=str(strategies), max_restarts=1, restart_delay_seconds=0.1)
    spec = BotSpec(strategy="WarmStrategy", strategy_id="crashing", mode="dry_run", image="local",
                   config_path=str(config))
    try:
        services.reconcile(spec)
        # No endless restarts: the supervisor gives up and exits, so nothing is left that could restart it.
        # Until the supervisor has written its state, a bot it has not started yet also reads as failed:
        # wait for the supervisor's own word that it gave up, and for it to have exited.
        supervisor_log = services.bot_dir("crashing") / "supervisor.log"
        failed = wait_for(lambda: "giving up" in text(supervisor_log)
                          and (s := services.describe("crashing")).supervisor_pid is None and s, 120, "giving up")
        assert failed.status == "failed"
        assert (failed.restarts, failed.last_exit_code, failed.bot_pid) == (1, 2, None)
        log = text(services.bot_dir("crashing") / "bot.log")
        assert log.count("not valid JSON") == 2
        assert "giving up after 2 crashes in a row" in text(services.bot_dir("crashing") / "supervisor.log")
        heartbeat = SqliteTradingState().get("crashing")
        assert heartbeat.status == "error"
    finally:
        services.delete("crashing")


# --- bad environment and config, keys -------------------------------------------------------------


def minimal_env(config: Path, **changes: str) -> dict[str, str]:
    E = aws_contract.EnvVar
    env = {E.STRATEGY: "WarmStrategy", E.STRATEGY_ID: "warm", E.TRADING_MODE: "dry_run", E.CONFIG_PATH: str(config)}
    return {k: v for k, v in {**env, **changes}.items() if v is not None}


def test_missing_or_bad_environment_is_a_clear_error(tmp_path: Path):
    E = aws_contract.EnvVar
    with pytest.raises(BotRuntimeError, match="missing environment variables STRATEGY_ID, CONFIG_PATH"):
        BotSettings.from_env({E.STRATEGY: "S", E.TRADING_MODE: "dry_run"})
    with pytest.raises(BotRuntimeError, match="missing environment variable DYNAMODB_TABLE"):
        BotSettings.from_env(minimal_env(tmp_path, TRADAI_ENV="aws"))
    with pytest.raises(BotRuntimeError, match=r"TRADING_MODE='paper': expected one of live, dry_run"):
        BotSettings.from_env(minimal_env(tmp_path, TRADING_MODE="paper"))
    with pytest.raises(BotRuntimeError, match="TRADAI_HEARTBEAT_SECONDS='0'"):
        BotSettings.from_env(minimal_env(tmp_path, TRADAI_HEARTBEAT_SECONDS="0"))
    with pytest.raises(BotRuntimeError, match="TRADAI_MODEL_VERSION='latest'"):
        BotSettings.from_env(minimal_env(tmp_path, TRADAI_MODEL_VERSION="latest"))
    with pytest.raises(BotRuntimeError, match="live trading never runs against the local simulated exchange"):
        BotSettings.from_env(minimal_env(tmp_path, TRADING_MODE="live", **{LOCAL_EXCHANGE_URL: "http://127.0.0.1:8300"}))
    with pytest.raises(BotRuntimeError, match="the config's exchange is kraken; the local simulated exchange is binance"):
        local_exchange_config({"exchange": {"name": "kraken"}}, "http://127.0.0.1:8300")

    settings = BotSettings.from_env(minimal_env(tmp_path, ARCTICDB_S3_URI="lmdb:///x", TRADAI_HOME=str(tmp_path)))
    assert (settings.heartbeat_seconds, settings.arctic_uri, settings.tradai_env) == (60.0, "lmdb:///x", "local")
    assert isinstance(trading_state(settings), SqliteTradingState)
    aws = BotSettings.from_env(minimal_env(tmp_path, TRADAI_ENV="aws", DYNAMODB_TABLE="tradai-trading-state-prod"))
    assert trading_state(aws).table_name == "tradai-trading-state-prod"


def test_missing_invalid_and_key_carrying_configs_are_refused_without_showing_keys(tmp_path: Path):
    with pytest.raises(BotRuntimeError, match=f"CONFIG_PATH={tmp_path / 'nope.json'}: the config file does not exist"):
        load_config(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text('{"exchange": ')
    with pytest.raises(BotRuntimeError, match="not valid JSON"):
        load_config(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(BotRuntimeError, match="expected a JSON object, found list"):
        load_config(str(tmp_path / "list.json"))

    settings = BotSettings.from_env(minimal_env(tmp_path / "c.json"))
    with pytest.raises(BotRuntimeError, match="carries exchange credentials \\(key, secret\\)") as refused:
        check_exchange_keys({"exchange": {"key": KEY, "secret": SECRET}}, settings, {})
    assert KEY not in str(refused.value) and SECRET not in str(refused.value)
    live = BotSettings.from_env(minimal_env(tmp_path / "c.json", TRADING_MODE="live"))
    with pytest.raises(BotRuntimeError, match="live trading needs the exchange secret: FREQTRADE__EXCHANGE__SECRET"):
        check_exchange_keys({"exchange": {"key": ""}}, live, {aws_contract.EnvVar.EXCHANGE_KEY: KEY})
    check_exchange_keys({}, live, {aws_contract.EnvVar.EXCHANGE_KEY: KEY, aws_contract.EnvVar.EXCHANGE_SECRET: SECRET})


def test_the_command_reports_bad_input_with_exit_code_2_and_an_error_heartbeat(tradai_home: Path, tmp_path: Path):
    config = tmp_path / "keys.json"
    config.write_text(json.dumps({"exchange": {"name": "binance", "key": KEY, "secret": SECRET}}))
    E = aws_contract.EnvVar
    result = subprocess.run(
        [TRADAI, "run-bot"], capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env=bot_env(**minimal_env(config), TRADAI_HOME=str(tradai_home), **{E.EXCHANGE_KEY: KEY}),
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "cannot start" in output and "carries exchange credentials" in output
    assert KEY not in output and SECRET not in output
    assert SqliteTradingState().get("warm").status == "error"

    missing = subprocess.run([TRADAI, "run-bot"], capture_output=True, text=True, cwd=tmp_path, timeout=60,
                             env=bot_env(**minimal_env(config, STRATEGY=None)))
    assert missing.returncode == 2 and "missing environment variable STRATEGY" in missing.stdout + missing.stderr


# --- model strategies -----------------------------------------------------------------------------


def test_a_model_strategy_gets_the_champion_or_the_pinned_version(tmp_path: Path, strategies: Path):
    from mlflow import MlflowClient

    uri = os.environ["MLFLOW_TRACKING_URI"]  # the session's SQLite registry (its schema is made once)
    name = f"WarmModel{uuid.uuid4().hex[:8]}"  # the registered model is named after the strategy class
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=str(tmp_path / "model"))
    client.set_registered_model_alias(name, "champion", "1")
    env = minimal_env(tmp_path / "c.json", STRATEGY=name, MLFLOW_TRACKING_URI=uri,
                      ARCTICDB_S3_URI=f"lmdb://{tmp_path / 'arctic'}")

    assert strategy_is_model("WarmModel", strategies) and not strategy_is_model("WarmStrategy", strategies)
    champion = resolve_model(BotSettings.from_env(env), {})
    assert champion == {"name": name, "version": "1", "tracking_uri": uri}
    assert resolve_model(BotSettings.from_env({**env, "TRADAI_MODEL_VERSION": "2"}), {})["version"] == "2"
    assert resolve_model(BotSettings.from_env(env), {"tradai_model": {"version": "2"}})["version"] == "2"
    with pytest.raises(BotRuntimeError, match=rf"model {name} version 7 does not exist .*versions: \[1, 2\]"):
        resolve_model(BotSettings.from_env({**env, "TRADAI_MODEL_VERSION": "7"}), {})
    with pytest.raises(BotRuntimeError, match="strategy Nope not found"):
        strategy_is_model("Nope", strategies)
    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(BotRuntimeError, match="no version with the alias 'champion'"):
        resolve_model(BotSettings.from_env(env), {})


# --- the bot image --------------------------------------------------------------------------------


def dockerfile_stage(path: Path, name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of one stage, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", path.read_text())
    stage: list[tuple[str, str]] | None = None
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        if instruction.upper() == "FROM":
            if stage is not None:
                break
            if rest.split()[-1] == name:
                stage = []
        if stage is not None:
            stage.append((instruction.upper(), rest.strip()))
    assert stage, f"no stage {name} in {path}"
    return stage


def test_the_bot_image_is_built_from_the_lock_file_compiled_and_unprivileged():
    dockerfile = PROJECT_ROOT / "deploy" / "Dockerfile"
    bot = dockerfile_stage(dockerfile, "bot")
    assert ("COPY", "--from=app-build /opt/venv /opt/venv") in bot
    # app-build: uv.lock exactly (--frozen, no dev packages) into a venv with compiled bytecode.
    build = dockerfile_stage(dockerfile, "app-build")
    syncs = [rest for ins, rest in build if ins == "RUN" and "uv sync" in rest]
    assert len(syncs) == 2 and all("--frozen --no-dev" in s for s in syncs)
    assert "UV_COMPILE_BYTECODE=1" in " ".join(rest for ins, rest in dockerfile_stage(dockerfile, "uv-base"))
    assert any("compileall" in rest for ins, rest in bot if ins == "RUN")
    assert [rest for ins, rest in bot if ins == "USER"] == ["tradai"]
    [entrypoint] = [json.loads(rest) for ins, rest in bot if ins == "ENTRYPOINT"]
    assert entrypoint == ["tradai", "run-bot"]
    env = " ".join(rest for ins, rest in bot if ins == "ENV")
    assert "TRADAI_ENV=aws" in env and "TRADAI_STRATEGIES=/opt/tradai/strategies" in env
    build = subprocess.run(
        ["make", "-n", "-f", "deploy/images.mk", "bot-image", "STACK=staging", "ECR_REGISTRY=registry", "IMAGE_TAG=abc"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    assert "-f deploy/Dockerfile --target bot -t registry/tradai-bot-staging:abc ." in build
