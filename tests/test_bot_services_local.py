"""Dry-run bots as supervised local processes: restarts, the restart limit, and freqtrade on the fake Binance."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from resources.bot_services import BotSpec, BotSpecError
from resources.local_bots import LocalBotServices
from tests.deployment_support import stand_in, text
from tests.fakes.client import FakeBinance
from tests.servers import wait_for

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def spec(config: Path, **changes) -> BotSpec:
    fields = {
        "strategy": "SampleStrategy",
        "strategy_id": "sample-local",
        "mode": "dry_run",
        "image": "local",
        "config_path": str(config),
        "stake_amount": 0.01,
        "pairs": ("ETH/BTC",),
    }
    return BotSpec(**{**fields, **changes})


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text("{}")
    return path


@pytest.fixture
def bots(tradai_home: Path) -> Iterator[list[LocalBotServices]]:
    """Services made by the test; every bot they started is stopped afterwards."""
    made: list[LocalBotServices] = []
    yield made
    for services in made:
        for bot_dir in services.bots_dir.glob("*"):
            services.delete(bot_dir.name)


def local(bots: list[LocalBotServices], **fields) -> LocalBotServices:
    services = LocalBotServices(**{"restart_delay_seconds": 0.1, "stop_timeout_seconds": 5, **fields})
    bots.append(services)
    return services


def test_a_crashed_bot_is_restarted_and_an_unchanged_reconcile_keeps_its_processes(bots, config, tmp_path):
    services = local(bots, tradai=stand_in(tmp_path / "ft", "exec sleep 300"))

    started = services.reconcile(spec(config))
    assert started.actions == ("started supervisor",)
    wait_for(lambda: services.describe("sample-local").status == "running", 10, "the bot starting")
    running = services.describe("sample-local")
    assert psutil.pid_exists(running.bot_pid)
    assert running.log_path == services.bots_dir / "sample-local" / "bot.log"

    os.kill(running.bot_pid, signal.SIGKILL)
    wait_for(lambda: services.describe("sample-local").restarts == 1, 10, "the restart")
    wait_for(lambda: services.describe("sample-local").status == "running", 10, "the bot running again")
    restarted = services.describe("sample-local")
    assert restarted.bot_pid != running.bot_pid
    assert restarted.supervisor_pid == running.supervisor_pid
    assert restarted.last_exit_code == -signal.SIGKILL

    again = services.reconcile(spec(config))
    assert again.actions == ()
    assert (again.supervisor_pid, again.bot_pid) == (restarted.supervisor_pid, restarted.bot_pid)

    stopped = services.reconcile(spec(config, mode="stopped"))
    assert (stopped.status, stopped.actions) == ("stopped", ("stopped",))
    assert not psutil.pid_exists(restarted.bot_pid)
    assert stopped.supervisor_pid is None


def test_a_changed_spec_restarts_the_bot_with_the_new_settings(bots, config, tmp_path):
    services = local(bots, tradai=stand_in(tmp_path / "ft", "env > \"$PWD/env.txt\"; exec sleep 300"))
    environment = services.bots_dir / "sample-local" / "env.txt"

    first = services.reconcile(spec(config))
    wait_for(lambda: "FREQTRADE__STAKE_AMOUNT=0.01" in text(environment), 10, "the bot's environment")
    assert "FREQTRADE__DRY_RUN=true" in environment.read_text()
    environment.unlink()

    second = services.reconcile(spec(config, stake_amount=0.02))

    assert second.actions == ("stopped the previous bot", "started supervisor")
    assert second.supervisor_pid != first.supervisor_pid
    wait_for(lambda: "FREQTRADE__STAKE_AMOUNT=0.02" in text(environment), 10, "the new environment")


def test_a_bot_that_keeps_crashing_is_given_up_after_the_restart_limit(bots, config, tmp_path):
    services = local(bots, tradai=stand_in(tmp_path / "ft", "echo broken config; exit 3"), max_restarts=2)

    services.reconcile(spec(config))
    wait_for(lambda: services.describe("sample-local").status == "failed", 15, "giving up")

    failed = services.describe("sample-local")
    assert (failed.restarts, failed.last_exit_code, failed.bot_pid) == (2, 3, None)
    assert failed.log_path.read_text().count("broken config") == 3
    supervisor_log = (services.bots_dir / "sample-local" / "supervisor.log").read_text()
    assert "giving up after 3 crashes in a row" in supervisor_log


def test_delete_forgets_the_bot_but_keeps_its_log(bots, config, tmp_path):
    services = local(bots, tradai=stand_in(tmp_path / "ft", "echo hello; exec sleep 300"))
    services.reconcile(spec(config))
    wait_for(lambda: "hello" in text(services.bots_dir / "sample-local" / "bot.log"), 10, "output")
    # The bot prints before its supervisor records its pid: wait for the record too.
    bot_pid = wait_for(lambda: services.describe("sample-local").bot_pid, 10, "the bot's pid recorded")

    deleted = services.delete("sample-local")

    assert (deleted.status, deleted.actions) == ("absent", ("deleted",))
    assert services.describe("sample-local").status == "absent"
    assert not psutil.pid_exists(bot_pid)
    assert (services.bots_dir / "sample-local" / "bot.log").is_file()


def test_live_bots_and_missing_configs_are_refused(bots, tmp_path, config):
    services = local(bots)
    with pytest.raises(BotSpecError, match="dry-run bots only"):
        services.reconcile(spec(config, mode="live", exchange_secret="tradai/dev/exchange/binance"))
    with pytest.raises(BotSpecError, match=f"config file {tmp_path / 'nope.json'} does not exist"):
        services.reconcile(spec(tmp_path / "nope.json"))
    assert services.describe("sample-local").status == "absent"


def test_freqtrade_runs_a_dry_run_bot_against_the_fake_exchange(
    bots, fake_binance: FakeBinance, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    # Freqtrade sets up no log file when it sees pytest's variable, which the bot would inherit.
    monkeypatch.delenv("PYTEST_VERSION", raising=False)
    urls = fake_binance.ccxt_config("spot")["urls"]
    config = tmp_path / "bot-config.json"
    config.write_text(json.dumps({
        "exchange": {
            "name": "binance", "key": "", "secret": "",
            "pair_whitelist": ["ETH/BTC", "LTC/BTC", "XRP/BTC"],
            "ccxt_config": {"urls": urls}, "ccxt_async_config": {"urls": urls},
            "enable_ws": False, "only_from_ccxt": True,
        },
        "stake_currency": "BTC", "stake_amount": 0.05, "dry_run": False, "dry_run_wallet": 1,
        "max_open_trades": 3, "timeframe": "5m", "pairlists": [{"method": "StaticPairList"}],
        "entry_pricing": {"price_side": "same", "use_order_book": False, "order_book_top": 1,
                          "price_last_balance": 0.0,
                          "check_depth_of_market": {"enabled": False, "bids_to_ask_delta": 1}},
        "exit_pricing": {"price_side": "same", "use_order_book": False, "order_book_top": 1},
        "internals": {"heartbeat_interval": 1},
        "initial_state": "running",
    }))
    services = local(bots)
    log = services.bots_dir / "sample-local" / "freqtrade.log"

    services.reconcile(spec(config))
    wait_for(lambda: "state='RUNNING'" in text(log), 90, "freqtrade's first heartbeat")

    output = log.read_text()
    # The deployment's settings win over the config file: dry run, the spec's pairs and stake.
    assert "Dry run is enabled" in output
    assert "Whitelist with 1 pairs: ['ETH/BTC']" in output
    assert "`0.01 BTC`" in output
    running = services.describe("sample-local")
    assert running.status == "running" and psutil.pid_exists(running.bot_pid)

    stopped = services.reconcile(spec(config, mode="stopped"))
    assert stopped.status == "stopped"
    assert not psutil.pid_exists(running.bot_pid)
    assert (services.bots_dir / "sample-local" / "trades.sqlite").is_file()
