"""Shadow evaluation before promotion, on a real Dagster instance, MLflow on SQLite, the audit log in ArcticDB
on LMDB and the local bot backend's real supervised processes. The bots are stand-in programs (a shell
script under the real supervisor: a real Freqtrade dry-run bot takes far longer to start than this module
may), and their trades are rows in Freqtrade-shaped ``trades`` and ``orders`` tables where
``resources.bot_trades`` reads them (a local bot's database; for ECS services on moto, the export an ECS bot
uploads to the configs bucket); the clock is injected, so a shadow period of days passes in a tick."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import psutil
import pytest

from resources.arctic import ArcticStore
from resources.bot_trades import LocalBotTrades, S3BotTrades, upload_trades
from resources.local_bots import LocalBotServices
from resources.model_registry import ModelRegistry
from resources.notifier import Notifier
from sensors.models import build_challenger_sensor
from sensors.shadow import build_shadow_sensor
from tests.deployment_support import (
    deploy,
    ecs_services,
    local_services,
    new_bucket,
    new_cluster,
    record_backtest,
    stand_in,
    store_config,
)
from tests.model_lifecycle_support import log_version, make_champion, write_toy_strategy
from tests.servers import wait_for
from tradai_assets.model_lifecycle import SideResult, conclude, promotion_policy
from tradai_assets.model_shadow import shadow_job
from tradai_core.keys import strategy_id
from tradai_core.model_settings import ModelSettings, ModelSettingsError
from tradai_core.shadow import SHADOW_JOB, shadow_bot_id, shadow_state

NOTIFICATIONS = "tradai.notifications"
# The stand-in bot: a shadow fails to start when FAIL_SHADOW is in the test's environment of the bot.
BOT = (
    'case "$STRATEGY_ID" in *-shadow) if [ -n "$FAIL_SHADOW" ]; then echo "cannot load the model"; exit 3; fi;; esac\n'
)
BOT += "exec sleep 300"
SHADOW_SETTINGS = {"shadow_days": 2, "min_trades": 5, "label_horizon": 6, "min_rows": 100, "folds": 2}


def write_trades(database: Path, trades: list[tuple[str, object, object, float | None]]) -> None:
    """Trades in a bot's database as Freqtrade 2026.9 stores them (its ``trades``, ``orders`` and
    ``KeyValueStore`` tables, naive UTC dates, is_open 0/1): each trade an entry order filled when it
    opened and, once closed, an exit order filled when it closed, ``close_profit`` its return."""
    database.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.executescript(
            "CREATE TABLE IF NOT EXISTS trades (id INTEGER PRIMARY KEY, exchange VARCHAR(25) NOT NULL, "
            "pair VARCHAR(25) NOT NULL, is_open BOOLEAN NOT NULL, is_short BOOLEAN NOT NULL, "
            "open_date DATETIME NOT NULL, close_date DATETIME, open_rate FLOAT NOT NULL, close_rate FLOAT, "
            "amount FLOAT NOT NULL, stake_amount FLOAT NOT NULL, fee_open_cost FLOAT, fee_close_cost FLOAT, "
            "close_profit FLOAT, close_profit_abs FLOAT, realized_profit FLOAT, exit_reason VARCHAR(255));"
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, ft_trade_id INTEGER NOT NULL "
            "REFERENCES trades (id), ft_order_side VARCHAR(25) NOT NULL, ft_pair VARCHAR(25) NOT NULL, "
            "status VARCHAR(255), filled FLOAT, order_filled_date DATETIME);"
            'CREATE TABLE IF NOT EXISTS "KeyValueStore" (id INTEGER PRIMARY KEY, key VARCHAR(25) NOT NULL, '
            "value_type VARCHAR(20) NOT NULL, string_value VARCHAR(255), datetime_value DATETIME, "
            "float_value FLOAT, int_value INTEGER)"
        )

        def stamp(when):
            return None if when is None else when.replace(tzinfo=None).isoformat(sep=" ")

        stake, rate, amount = 0.01, 0.05, 0.2
        for pair, opened, closed, profit in trades:
            trade = connection.execute(
                "INSERT INTO trades (exchange, pair, is_open, is_short, open_date, close_date, open_rate, close_rate, "
                "amount, stake_amount, fee_open_cost, fee_close_cost, close_profit, close_profit_abs, realized_profit, "
                "exit_reason) VALUES ('binance', ?, ?, 0, ?, ?, ?, ?, ?, ?, 0.00001, ?, ?, ?, 0.0, ?)",
                (
                    pair,
                    int(closed is None),
                    stamp(opened),
                    stamp(closed),
                    rate,
                    None if closed is None else rate * (1 + profit),
                    amount,
                    stake,
                    None if closed is None else 0.00001,
                    profit,
                    None if profit is None else profit * stake,
                    None if closed is None else "exit_signal",
                ),
            ).lastrowid
            orders = [("buy", opened)] + ([] if closed is None else [("sell", closed)])
            connection.executemany(
                "INSERT INTO orders (ft_trade_id, ft_order_side, ft_pair, status, filled, order_filled_date) "
                "VALUES (?, ?, ?, 'closed', ?, ?)",
                [(trade, side, pair, amount, stamp(when)) for side, when in orders],
            )


class Shadowed:
    """A toy model strategy with a champion deployed as a dry-run bot and a new challenger: local bots
    (the default), or ``bots`` given (ECS services on moto) whose trades ``trades`` reads from the
    exports they upload (``upload`` writes one, as an ECS bot's heartbeat does)."""

    def __init__(
        self,
        root,
        tracking_uri,
        instance,
        clock,
        name,
        settings=SHADOW_SETTINGS,
        deployed=True,
        bots=None,
        trades=None,
        upload=None,
        **bot_fields,
    ):
        from sklearn.linear_model import LogisticRegression

        from resources.backtest_store import BacktestStore

        self.name, self.instance, self.clock = name, instance, clock
        self.spec = write_toy_strategy(root / "strategies", name, settings=settings)
        arctic = ArcticStore(uri=f"lmdb://{root / 'arctic'}")
        self.registry = ModelRegistry(tracking_uri=tracking_uri, store=arctic)
        x, y = np.random.default_rng(0).normal(size=(40, 2)), np.arange(40) % 2
        self.champion = log_version(self.registry, name, LogisticRegression().fit(x, y))
        make_champion(self.registry, name, self.champion)
        self.store = BacktestStore(arctic=arctic)
        store_config(self.store, name)
        self.root, self.upload = root, upload
        self.bots = bots or local_services(root / "home", stand_in(root / "bot", BOT), max_restarts=0, **bot_fields)
        self.trades = trades or LocalBotTrades(home=str(root / "home"))
        self.resources = {
            "model_registry": self.registry,
            "bot_services": self.bots,
            "bot_trades": self.trades,
            "notifier": Notifier(),
            "backtest_store": self.store,
        }
        if deployed:
            self.write_trades(strategy_id(name), [])  # Freqtrade creates its database at start
            record_backtest(instance, name)
            deploy(instance, [self.spec], name, self.resources, mode="dry_run", stake_amount="0.01", pairs=["ETH/BTC"])
            if self.local:
                self.champion_bot = wait_for(
                    lambda: self.bots.describe(strategy_id(name)).bot_pid and self.bots.describe(strategy_id(name)),
                    15,
                    "the champion's bot running",
                )
        self.challenger = log_version(self.registry, name, LogisticRegression(C=0.5).fit(x, y))
        self.registry.set_challenger(name, self.challenger, trigger="training")
        self.sensor = build_shadow_sensor([self.spec], clock=clock.now)
        self.challenger_sensor = build_challenger_sensor([self.spec])
        self.job = shadow_job([self.spec], clock=clock.now)
        self.cursor = None

    @property
    def local(self) -> bool:
        return isinstance(self.bots, LocalBotServices)

    def write_trades(self, bot_id: str, trades: list[tuple[str, object, object, float | None]]) -> None:
        """Trades into the bot's database: a local bot's own file, or an ECS bot's, then uploaded."""
        if self.local:
            write_trades(self.trades.database(bot_id), trades)
            return
        database = self.root / "ecs-bots" / bot_id / "trades.sqlite"
        write_trades(database, trades)
        self.upload(database, bot_id)

    def tick(self):
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources) as context:
            result = self.sensor(context)
        self.cursor = result.cursor
        return result

    def challenger_tick(self):
        with dg.build_sensor_context(instance=self.instance, resources={"model_registry": self.registry}) as context:
            return self.challenger_sensor(context)

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        assert request.job_name == SHADOW_JOB
        return self.job.execute_in_process(
            instance=self.instance, run_config=request.run_config, resources=self.resources, raise_on_error=False
        )

    def state(self):
        return shadow_state(self.registry.audit_log(self.name), self.challenger)

    def champion_unchanged(self):
        now = self.bots.describe(strategy_id(self.name))
        assert (now.status, now.supervisor_pid, now.bot_pid) == (
            "running",
            self.champion_bot.supervisor_pid,
            self.champion_bot.bot_pid,
        )
        assert psutil.pid_exists(now.bot_pid)

    def close(self):
        if self.local:
            for bot_dir in self.bots.bots_dir.glob("*"):
                self.bots.delete(bot_dir.name)


@pytest.fixture
def shadowed(tmp_path, tracking_uri, memory_instance, clock, deployments_file):
    made = []

    def make(name, **kwargs):
        made.append(Shadowed(tmp_path, tracking_uri, memory_instance, clock, name, **kwargs))
        return made[-1]

    yield make
    for location in made:
        location.close()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"shadow_days": -1}, "shadow_days must be a whole number of days >= 0, got -1"),
        ({"shadow_days": 1.5}, "shadow_days must be a whole number of days >= 0, got 1.5"),
        ({"shadow_days": "3"}, "shadow_days must be a whole number of days >= 0, got '3'"),
        (
            {"shadow_days": 2, "shadow_min_trades": -4},
            "shadow_min_trades must be a whole number of trades >= 0, got -4",
        ),
        ({"shadow_days": 2, "shadow_min_trades": 1}, "shadow_min_trades must be 0 (min_trades) or at least 2"),
        ({"shadow_min_trades": 10}, "shadow_min_trades needs shadow_days > 0"),
    ],
)
def test_bad_shadow_settings_are_refused_naming_the_key_and_value(values, message):
    with pytest.raises(ModelSettingsError, match=re.escape(message)):
        ModelSettings.from_spec(values)
    assert ModelSettings.from_spec({}).shadow_days == 0  # off by default


def test_with_shadow_off_the_challenger_is_evaluated_at_once_and_no_shadow_starts(shadowed):
    location = shadowed("Unshadowed", settings={"label_horizon": 6}, deployed=False)
    (request,) = location.challenger_tick()
    assert request.run_key == f"evaluate:Unshadowed:v{location.challenger}"
    result = location.tick()
    assert result.run_requests == [] and "no model with shadow_days > 0" in result.skip_reason.skip_message
    assert location.state().status == "none" and location.bots.list_bots() == []


def test_a_shadow_trades_beside_the_champion_and_the_decision_waits_for_its_trades(shadowed, clock, caplog):
    location = shadowed("Shadowy")
    name, challenger, bots = "Shadowy", location.challenger, location.bots
    shadow_id = shadow_bot_id(name)

    (start,) = location.tick().run_requests
    assert start.run_key == f"shadow-start:{name}:v{challenger}"
    waiting = location.challenger_tick()
    assert isinstance(waiting, dg.SkipReason) and "waits for its shadow bot to start" in waiting.skip_message
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        assert location.run(start).success
    assert any("shadow_started" in r.getMessage() for r in caplog.records if r.name == NOTIFICATIONS)
    state = location.state()
    assert (state.status, state.bot_id, state.started) == ("running", shadow_id, clock.now())
    assert state.ends == clock.now() + timedelta(days=2)
    shadow = wait_for(lambda: bots.describe(shadow_id).bot_pid and bots.describe(shadow_id), 15, "the shadow running")
    # Beside the champion: its own id, the champion deployment's pairs and stake, the challenger's version pinned.
    launch = json.loads((bots.bot_dir(shadow_id) / "launch.json").read_text())
    environment = launch["environment"]
    assert environment["STRATEGY_ID"] == shadow_id and environment["FREQTRADE__STAKE_AMOUNT"] == "0.01"
    config = json.loads(Path(environment["CONFIG_PATH"]).read_text())
    assert config["tradai_model"]["version"] == challenger and config["bot_name"] == shadow_id
    assert config["exchange"]["pair_whitelist"] == ["ETH/BTC"] and config["dry_run"] is True
    location.champion_unchanged()

    # A day in: trades on both bots, promotion still waits.
    begin = clock.now()
    shadow_returns = [0.012, 0.018, 0.015, 0.02, 0.011, 0.017]
    champion_returns = [0.001, -0.002, 0.0, 0.002, -0.001, 0.001]
    location.write_trades(
        shadow_id,
        [
            ("ETH/BTC", begin + timedelta(hours=i + 1), begin + timedelta(hours=i + 2), r)
            for i, r in enumerate(shadow_returns)
        ]
        + [("ETH/BTC", begin + timedelta(hours=30), None, None)],
    )  # still open: not counted
    location.write_trades(
        strategy_id(name),
        [("ETH/BTC", begin - timedelta(hours=5), begin - timedelta(hours=4), 0.5)]
        + [
            ("ETH/BTC", begin + timedelta(hours=i + 1), begin + timedelta(hours=i + 2), r)
            for i, r in enumerate(champion_returns)
        ],
    )  # the first trade: before the shadow, not compared
    clock.advance(86400)
    running = location.tick()
    assert running.run_requests == [] and "6 trades so far" in running.skip_reason.skip_message
    (observation,) = running.asset_events
    assert observation.asset_key == dg.AssetKey(["strategies", name, "model"])
    assert observation.metadata["shadow_status"].value == "running" and observation.metadata["shadow_trades"].value == 6
    assert "trades as shadow bot" in location.challenger_tick().skip_message

    # The period over: the shadow is finished, compared and stopped; then the challenger is evaluated.
    clock.advance(86400 + 60)
    (finish,) = location.tick().run_requests
    assert finish.run_key == f"shadow-finish:{name}:v{challenger}"
    assert location.run(finish).success
    assert not psutil.pid_exists(shadow.bot_pid) and bots.describe(shadow_id).status == "stopped"
    location.champion_unchanged()
    finished = location.state()
    assert finished.status == "finished"
    result = finished.result
    assert result["trades"] == {"champion": 6, "shadow": 6}
    assert result["decision"]["outcome"] == "promote" and result["decision"]["challenger"]["trades"] == 6
    (evaluate,) = location.challenger_tick()
    assert evaluate.run_key == f"evaluate:{name}:v{challenger}"

    # The evaluation's decision needs the holdout and the shadow: a holdout that would promote and a
    # shadow that promotes promote; the record and the audit log carry the shadow's result.
    rng = np.random.default_rng(3)
    record, row = conclude(
        name,
        False,
        SideResult(location.champion, rng.normal(0.0, 0.01, 60)),
        SideResult(challenger, rng.normal(0.01, 0.01, 60)),
        promotion_policy(location.spec, ModelSettings.from_spec(SHADOW_SETTINGS)),
        evaluate.run_key,
        location.registry,
        Notifier(),
        shadow=result,
    )
    assert record["holdout_outcome"] == "promote" and record["outcome"] == row["event"] == "promote"
    assert json.loads(location.registry.audit_log(name)["details"].iloc[-1])["shadow"]["trades"]["shadow"] == 6
    assert any(r.startswith("shadow (6 against 6 trades") for r in record["reasons"])


@pytest.mark.integration
def test_a_shadow_of_ecs_bots_compares_the_trades_they_upload(shadowed, clock, aws_env, network):
    """On AWS the bots' databases live in their containers: the shadow reads the exports they upload
    to the configs bucket (moto here), as the divergence reports do."""
    bucket = new_bucket(aws_env)
    bots = ecs_services(aws_env, new_cluster(aws_env), network, bucket)
    client = aws_env.client("s3")

    def upload(database: Path, bot_id: str) -> None:  # what an ECS bot does at each heartbeat
        upload_trades(database, f"s3://{bucket}/bots/{bot_id}/config.json", bot_id, client)

    exports = S3BotTrades(stack="dev", bucket=bucket, region=aws_env.region, endpoint_url=aws_env.url)
    location = shadowed("Clouded", bots=bots, trades=exports, upload=upload)
    shadow_id, champion_id = shadow_bot_id("Clouded"), strategy_id("Clouded")
    champion = bots.describe(champion_id)
    assert champion.running

    (start,) = location.tick().run_requests
    assert location.run(start).success
    assert bots.describe(shadow_id).running and location.state().status == "running"
    begin = clock.now()
    # Before the shadow bot's first upload its trades cannot be read: the sensor waits.
    clock.advance(3600)
    waiting = location.tick()
    assert waiting.run_requests == [] and "unknown trades so far" in waiting.skip_reason.skip_message

    location.write_trades(
        shadow_id,
        [("ETH/BTC", begin + timedelta(hours=i + 1), begin + timedelta(hours=i + 2), 0.01) for i in range(4)]
        + [("ETH/BTC", begin + timedelta(hours=9), None, None)],
    )
    location.write_trades(
        champion_id,
        [("ETH/BTC", begin - timedelta(hours=3), begin - timedelta(hours=2), 0.5)]
        + [("ETH/BTC", begin + timedelta(hours=i + 1), begin + timedelta(hours=i + 2), 0.002) for i in range(3)],
    )
    assert "4 trades so far" in location.tick().skip_reason.skip_message

    clock.advance(2 * 86400)
    (finish,) = location.tick().run_requests
    assert location.run(finish).success
    result = location.state().result
    assert result["trades"] == {"champion": 3, "shadow": 4}
    assert result["decision"]["outcome"] == "inconclusive"  # fewer than min_trades 5 each
    assert not bots.describe(shadow_id).running
    after = bots.describe(champion_id)
    assert after.running and after.task_definition_arn == champion.task_definition_arn


def test_a_shadow_that_trades_worse_keeps_the_champion_even_when_the_holdout_would_promote(shadowed):
    location = shadowed("Worse", deployed=False)
    shadow = {"trades": {"shadow": 8, "champion": 8}, "decision": {"outcome": "keep", "reasons": ["mean lower"]}}
    rng = np.random.default_rng(4)
    record, row = conclude(
        "Worse",
        False,
        SideResult(location.champion, rng.normal(0.0, 0.01, 60)),
        SideResult(location.challenger, rng.normal(0.01, 0.01, 60)),
        promotion_policy(location.spec, ModelSettings.from_spec(SHADOW_SETTINGS)),
        "test",
        location.registry,
        Notifier(),
        shadow=shadow,
    )
    assert (record["holdout_outcome"], record["outcome"], row["event"]) == ("promote", "keep", "keep")
    assert location.registry.aliases("Worse")["champion"] == location.champion


def test_a_shadow_bot_that_crashes_at_start_fails_the_shadow_and_never_touches_the_champion(
    shadowed, caplog, monkeypatch
):
    location = shadowed("Crashing")
    monkeypatch.setenv("FAIL_SHADOW", "1")  # the shadow's supervisor starts with it; the champion's did not
    shadow_id = shadow_bot_id("Crashing")
    (start,) = location.tick().run_requests
    assert location.run(start).success  # the process started; it dies at once
    wait_for(lambda: location.bots.describe(shadow_id).status == "failed", 15, "the supervisor giving up")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        result = location.tick()
    assert result.run_requests == []
    state = location.state()
    assert state.status == "failed" and "kept crashing" in state.reason and "last exit code 3" in state.reason
    # One shadow_failed alert for the tick (other alerts of the same tick, a crashed bot's, may come beside it).
    notes = [r.getMessage() for r in caplog.records if r.name == NOTIFICATIONS]
    (note,) = [n for n in notes if "shadow_failed" in n]
    assert "last exit code 3" in note
    assert result.asset_events[0].metadata["shadow_status"].value == "failed"
    location.champion_unchanged()
    skipped = location.challenger_tick()
    assert "failed (the bot kept crashing" in skipped.skip_message and "it is not promoted" in skipped.skip_message
    assert location.tick().run_requests == []  # no second start for that version
    assert location.registry.aliases("Crashing")["champion"] == location.champion


def test_a_shadow_without_a_champion_bot_fails_naming_the_reason(shadowed, caplog):
    location = shadowed("Lonely", deployed=False)
    (start,) = location.tick().run_requests
    with caplog.at_level(logging.INFO, logger=NOTIFICATIONS):
        result = location.run(start)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message
    assert "the champion's bot lonely is not deployed" in message and "strategies/Lonely/deployment" in message
    assert location.state().status == "failed" and "not deployed" in location.state().reason
    assert any("shadow_failed" in r.getMessage() for r in caplog.records if r.name == NOTIFICATIONS)
    assert location.bots.list_bots() == []  # nothing started, nothing else touched


def test_the_evaluation_refuses_to_decide_while_the_shadow_runs(shadowed, tmp_path):
    from tests.test_model_lifecycle import lifecycle_resources
    from tradai_assets.model_lifecycle import build_model_lifecycle

    location = shadowed("Impatient")
    (start,) = location.tick().run_requests
    assert location.run(start).success
    jobs, _ = build_model_lifecycle([location.spec])
    resources = {**lifecycle_resources(tmp_path, location.registry.store), "model_registry": location.registry}
    result = (
        dg.Definitions(jobs=jobs, resources=resources)
        .resolve_job_def("evaluate_challenger")
        .execute_in_process(
            instance=location.instance,
            raise_on_error=False,
            run_config={"ops": {"backtest_and_decide": {"config": {"model": "Impatient"}}}},
        )
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert (
        f"the shadow of challenger v{location.challenger} is running; no decision without it"
        in failure.step_failure_data.error.message
    )
    log = location.registry.audit_log("Impatient")
    assert not (
        log["event"].isin(["promote", "keep", "inconclusive"]) & (log["challenger"] == location.challenger)
    ).any()


@pytest.mark.integration
def test_the_api_shows_the_shadow_running_then_finished_and_refuses_an_unknown_model(
    shadowed, clock, tmp_path, tracking_uri
):
    import httpx

    from resources.trading_state import SqliteTradingState
    from tests.api_support import bearer, hs256_settings, hs256_token, serve_api
    from tradai_api.app import create_app
    from tradai_api.auth import BOTS_READ, MODELS_READ
    from tradai_api.stores import BotBackends

    location = shadowed("Served")
    shadow_id = shadow_bot_id("Served")
    settings = hs256_settings(tmp_path, strategies_dir=tmp_path / "strategies", mlflow_tracking_uri=tracking_uri)
    backends = BotBackends(location.bots, SqliteTradingState(path=str(tmp_path / "state.db")), location.trades)
    with serve_api(create_app(settings, backends)) as url, httpx.Client(base_url=url, timeout=60) as http:
        reader = bearer(hs256_token([MODELS_READ]))
        none = http.get("/api/v1/models/Served/shadow", headers=reader)
        assert none.status_code == 200, none.text
        assert (none.json()["status"], none.json()["challenger"]) == ("none", location.challenger)

        (start,) = location.tick().run_requests
        assert location.run(start).success
        begin = clock.now()
        location.write_trades(
            shadow_id,
            [
                ("ETH/BTC", begin + timedelta(hours=1), begin + timedelta(hours=2), 0.01),
                ("ETH/BTC", begin + timedelta(hours=3), None, None),
            ],
        )
        running = http.get("/api/v1/models/Served/shadow", headers=reader).json()
        assert running["status"] == "running" and running["bot_id"] == shadow_id and running["trades"] == 1
        assert running["ends"].startswith((begin + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M"))

        clock.advance(2 * 86400 + 60)
        (finish,) = location.tick().run_requests
        assert location.run(finish).success
        finished = http.get("/api/v1/models/Served/shadow", headers=reader).json()
        assert finished["status"] == "finished" and finished["trades"] == 1
        assert finished["result"]["decision"]["outcome"] == "inconclusive"  # 1 trade < min_trades 5

        unknown = http.get("/api/v1/models/Nobody/shadow", headers=reader)
        assert unknown.status_code == 404 and "unknown model 'Nobody'" in unknown.json()["detail"]
        assert http.get("/api/v1/models/Served/shadow", headers=bearer(hs256_token([BOTS_READ]))).status_code == 403
