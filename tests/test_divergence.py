"""Divergence reports on a real dry-run bot-day: the probe strategy's Freqtrade databases recorded on the
local simulated exchange (``bench/divergence.py record``), the exchange's candles of that day synced into
ArcticDB through the market-data assets, and the replay by Freqtrade's backtesting."""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from resources.backtest_store import BacktestStore
from resources.bot_trades import BotTradesError, LocalBotTrades, S3BotTrades, read_database, upload_trades
from resources.freqtrade_runner import FreqtradeRunner
from resources.notifier import Notifier
from resources.trading_state import Heartbeat, SqliteTradingState
from tests.divergence_support import (
    DELAYED_PAIR,
    PROBE,
    PROBE_CONFIG,
    PROBE_ID,
    record_deployment,
    recording,
    sync_probe_candles,
    write_probe,
)
from tradai_assets.deployments import DEPLOYMENTS_ENV
from tradai_assets.divergence import (
    DIVERGENCE_CHECK,
    DivergenceError,
    build_divergence_asset,
    divergence_key,
    load_settings,
)
from tradai_assets.market_data import content_hash
from tradai_core.divergence import TRADE_COLUMNS, TradeFrameError, match_trades, summarise
from tradai_core.strategy_discovery import StrategySpec

pytestmark = pytest.mark.integration
CLEAN, DELAYED = recording("clean"), recording("delayed")
DAY = pd.Timestamp(CLEAN["started"]).strftime("%Y-%m-%d")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class World:
    """One platform holding the recorded bot-day: instance, candles, stored config, deployment."""

    def __init__(self, root: Path, fake):
        self.root = root
        self.instance = dg.DagsterInstance.ephemeral()
        self.arctic = sync_probe_candles(root, fake, self.instance, DAY)
        self.store = BacktestStore(arctic=self.arctic)
        self.config_hash = content_hash(PROBE_CONFIG)
        self.store.write_config(PROBE, PROBE_CONFIG, self.config_hash)
        self.spec = StrategySpec(name=PROBE, file=write_probe(root / "strategies"))
        record_deployment(self.instance, PROBE, self.config_hash, pd.Timestamp(CLEAN["started"]).timestamp())
        self.asset = build_divergence_asset(self.spec)

    def bot_home(self, label: str, recorded: dict) -> Path:
        """A TradAI home holding the recorded bot's database and its final heartbeat."""
        home = self.root / f"home-{label}"
        bot_dir = home / "bots" / PROBE_ID
        bot_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(recorded["database"], bot_dir / "trades.sqlite")
        SqliteTradingState(path=str(home / "bots" / "state.db")).put(
            Heartbeat(
                strategy_id=PROBE_ID,
                status="stopped",
                last_heartbeat=datetime.fromisoformat(recorded["stopped"]),
                open_trades=0,
                profit=0.0,
            )
        )
        return home

    def report(self, home: Path, partition: str = DAY, arctic=None) -> dg.ExecuteInProcessResult:
        arctic = arctic or self.arctic
        return dg.materialize(
            [self.asset],
            instance=self.instance,
            partition_key=partition,
            raise_on_error=False,
            resources={
                "arctic": arctic,
                "backtest_store": BacktestStore(arctic=arctic),
                "freqtrade_runner": FreqtradeRunner(),
                "bot_trades": LocalBotTrades(home=str(home), timeout_seconds=0.5),
                "trading_state": SqliteTradingState(path=str(home / "bots" / "state.db")),
                "notifier": Notifier(),
            },
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory, fake_binance, request) -> World:
    fake_binance.reset()
    made = World(tmp_path_factory.mktemp("divergence"), fake_binance)
    deployments = made.root / "deployments.yaml"
    deployments.write_text(yaml.safe_dump({"deployments": {}}))
    patch = pytest.MonkeyPatch()
    patch.setenv(DEPLOYMENTS_ENV, str(deployments))
    request.addfinalizer(patch.undo)
    return made


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    [materialization] = [e.materialization for e in result.get_asset_materialization_events()]
    return {k: v.value for k, v in materialization.metadata.items()}


def check_of(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == DIVERGENCE_CHECK
    return evaluation


def failure(result: dg.ExecuteInProcessResult) -> str:
    assert not result.success
    [event] = [e for e in result.all_events if e.is_step_failure]
    return event.step_failure_data.error.message + str(event.step_failure_data.error.cause or "")


def test_without_a_fault_every_bot_trade_matches_the_replay_on_the_same_candles(world: World):
    home = world.bot_home("clean", CLEAN)
    database = home / "bots" / PROBE_ID / "trades.sqlite"
    before = digest(database)

    result = world.report(home)

    assert result.success
    meta = metadata(result)
    assert meta["bot_trades"] == 6 and meta["replay_trades"] == 6
    assert meta["matched_share"] == 1.0 and meta["aligned_share"] == 1.0
    assert meta["bot_only"] == 0 and meta["replay_only"] == 0
    assert meta["divergent_trades"] == []
    rows = meta["matched_trades"].records
    assert all(r.data["entry_diff_candles"] == 0 and r.data["exit_diff_candles"] == 0 for r in rows)
    # The bot pays the ask, the replay the candle's open: a few basis points, never a candle's worth.
    assert 0 < meta["max_abs_slippage_bps"] < 100
    assert "equity_overlay" in meta and meta["equity_overlay"].startswith("![")
    assert check_of(result).passed
    assert digest(database) == before  # read-only: the bot's database is untouched


def test_a_delayed_fill_is_named_and_fails_the_check_above_its_threshold(world: World, caplog):
    home = world.bot_home("delayed", DELAYED)
    settings = world.root / "deployments.yaml"
    settings.write_text(yaml.safe_dump({"deployments": {}, "divergence": {"warn_above": 0.05, "fail_above": 0.1}}))
    try:
        with caplog.at_level(logging.ERROR, logger="tradai.notifications"):
            result = world.report(home)
    finally:
        settings.write_text(yaml.safe_dump({"deployments": {}}))

    assert result.success  # the report itself is made; the check carries the verdict
    meta = metadata(result)
    [named] = meta["divergent_trades"]
    assert named.startswith(f"{DELAYED_PAIR}: bot trade 2 entry +1 candle(s)")
    [late] = [r.data for r in meta["matched_trades"].records if not r.data["aligned"]]
    assert (late["pair"], late["entry_diff_candles"], late["exit_diff_candles"]) == (DELAYED_PAIR, 1.0, 0.0)
    assert meta["matched_share"] == 1.0 and meta["aligned"] == 5
    evaluation = check_of(result)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "17% of 6 trade(s) not aligned" in evaluation.description
    assert any(
        "diverges from its backtest" in r.getMessage() and DELAYED_PAIR in r.getMessage() for r in caplog.records
    )


def test_a_day_without_bot_trades_reports_so_without_a_replay(world: World):
    home = world.bot_home("idle", CLEAN)
    database = home / "bots" / PROBE_ID / "trades.sqlite"
    with closing(sqlite3.connect(database)) as connection, connection:  # a bot that ran and never traded
        connection.execute("DELETE FROM orders")
        connection.execute("DELETE FROM trades")

    result = world.report(home)

    assert result.success
    meta = metadata(result)
    assert meta["bot_trades"] == 0 and meta["replay_trades"] == 0
    assert meta["reason"].startswith(f"the bot {PROBE_ID} made no trades on {DAY}")
    assert check_of(result).passed and "made no trades" in check_of(result).description


def test_a_day_before_the_first_deployment_fails_naming_it(world: World):
    day_before = (pd.Timestamp(DAY) - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    message = failure(world.report(world.bot_home("clean", CLEAN), partition=day_before))
    assert f"{PROBE} had no running deployment before {DAY} 00:00 UTC" in message


def test_a_replay_day_outside_the_stored_candles_fails_naming_the_span(world: World, tmp_path: Path):
    from resources.arctic import ArcticStore
    from tradai_core.candles import candle_symbol

    # The same platform, except that its candles stop the evening before the bot traded.
    earlier = ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}")
    snapshot = world.arctic.latest_markets_snapshot("binance", "spot")
    earlier.write_markets_snapshot("binance", "spot", snapshot.payload, snapshot.content_hash, {})
    BacktestStore(arctic=earlier).write_config(PROBE, PROBE_CONFIG, world.config_hash)
    for pair in ("ETH/BTC", "LTC/BTC"):
        symbol = candle_symbol(pair, "1m", "spot")
        frame = world.arctic.read_candles("binance", "spot", symbol)
        shifted = frame.set_axis(frame.index - pd.Timedelta(days=2))
        earlier.replace_window(
            "binance", "spot", symbol, shifted, shifted.index[0], shifted.index[-1] + pd.Timedelta(minutes=1), {}
        )
    home = world.bot_home("clean", CLEAN)

    message = failure(world.report(home, arctic=earlier))

    assert f"divergence of {PROBE} on {DAY}" in message
    assert "reaches outside the stored candles" in message and "stored binance spot 1m candles" in message


def test_a_missing_bot_database_fails_naming_its_path(world: World, tmp_path: Path):
    message = failure(world.report(tmp_path / "nobody"))
    assert f"bot trade database {tmp_path / 'nobody' / 'bots' / PROBE_ID / 'trades.sqlite'} does not exist" in message


def test_a_locked_bot_database_fails_after_the_timeout_and_stays_intact(world: World):
    home = world.bot_home("locked", CLEAN)
    database = home / "bots" / PROBE_ID / "trades.sqlite"
    before = digest(database)
    with closing(sqlite3.connect(database, isolation_level=None)) as writer:
        writer.execute("BEGIN EXCLUSIVE")  # what a bot holds while it commits
        writer.execute("UPDATE trades SET amount = amount WHERE id = 1")
        message = failure(world.report(home))
        writer.execute("ROLLBACK")

    assert f"bot trade database {database} is locked by another process (waited 0.5 s)" in message
    assert digest(database) == before
    assert len(read_database(database)["trades"]) == 6


def test_a_file_that_is_not_a_trade_database_is_refused_by_name(tmp_path: Path):
    bad = tmp_path / "bots" / PROBE_ID / "trades.sqlite"
    bad.parent.mkdir(parents=True)
    bad.write_text("not a database")
    with pytest.raises(BotTradesError, match=f"bot trade database {bad} is not an SQLite database"):
        LocalBotTrades(home=str(tmp_path)).read(PROBE_ID)
    assert bad.read_text() == "not a database"


def test_an_ecs_bots_uploaded_export_reads_as_its_database(aws_env, tmp_path: Path):
    moto = aws_env
    from resources.bot_trades import trade_log

    bucket = f"configs-{tmp_path.name.lower().replace('_', '-')[:40]}"
    client = moto.client("s3")
    client.create_bucket(Bucket=bucket)
    reader = S3BotTrades(stack="dev", bucket=bucket, endpoint_url=moto.url, region=moto.region)
    with pytest.raises(BotTradesError, match=f"s3://{bucket}/bots/{PROBE_ID}/trades.json does not exist"):
        reader.read(PROBE_ID)

    where = upload_trades(DELAYED["database"], f"s3://{bucket}/bots/{PROBE_ID}/config-1.json", PROBE_ID, client)

    assert where == reader.location(PROBE_ID)
    uploaded = reader.read(PROBE_ID)
    expected = trade_log(PROBE_ID, "local", read_database(DELAYED["database"]))
    pd.testing.assert_frame_equal(uploaded.trades, expected.trades)
    assert uploaded.bot_start_time == expected.bot_start_time and uploaded.exported_at is not None


# --- the matching and the settings on their own ------------------------------------------------------


def trades(*rows: tuple) -> pd.DataFrame:
    columns = list(TRADE_COLUMNS)
    return pd.DataFrame([dict(zip(columns, r, strict=True)) for r in rows], columns=columns)


def at(minute: int) -> pd.Timestamp:
    return pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=minute)


def test_matching_respects_the_tolerance_and_reports_one_sided_trades():
    step = pd.Timedelta(minutes=1)
    bot = trades(
        (1, "A", False, at(2), at(4), 101.0, 99.0, 1.0, 0.2, -2.2, False),
        (2, "B", False, at(10), pd.NaT, 50.0, float("nan"), 1.0, 0.1, 0.0, True),
    )
    replay = trades(
        (0, "A", False, at(1), at(4), 100.0, 100.0, 1.0, 0.2, -0.2, False),
        (1, "B", False, at(14), at(15), 50.0, 51.0, 1.0, 0.1, 0.9, False),
    )

    strict = summarise(match_trades(bot, replay, step, tolerance_candles=0))
    loose = match_trades(bot, replay, step, tolerance_candles=1)

    assert (strict.matched, strict.bot_only, strict.replay_only) == (0, 2, 2)
    first = loose.iloc[0]
    assert (first.status, first.entry_diff_candles, first.exit_diff_candles) == ("matched", 1.0, 0.0)
    assert first.entry_slippage_bps == pytest.approx(100.0) and first.exit_slippage_bps == pytest.approx(100.0)
    assert first.profit_gap == pytest.approx(-2.0) and first.fee_diff == pytest.approx(0.0)
    assert list(loose.status) == ["matched", "bot_only", "replay_only"]


def test_a_trade_frame_without_its_columns_is_refused_by_name():
    with pytest.raises(TradeFrameError, match="replay trades lack column.s. entry_time, exit_time"):
        match_trades(
            trades(),
            pd.DataFrame(
                columns=[
                    "trade_id",
                    "pair",
                    "is_short",
                    "open_rate",
                    "close_rate",
                    "amount",
                    "fee_cost",
                    "profit_abs",
                    "is_open",
                ]
            ),
            pd.Timedelta(minutes=1),
        )


def test_thresholds_out_of_order_are_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "deployments.yaml"
    path.write_text(yaml.safe_dump({"divergence": {"warn_above": 0.5, "fail_above": 0.2}}))
    with pytest.raises(
        DivergenceError, match=f"{path}: divergence settings: need 0 <= warn_above .0.5. <= fail_above .0.2."
    ):
        load_settings(path)
    path.write_text(yaml.safe_dump({"divergence": {"warn_abov": 0.5}}))
    with pytest.raises(
        DivergenceError, match="divergence must be a mapping of fail_above, tolerance_candles, warn_above"
    ):
        load_settings(path)
    assert divergence_key(PROBE).to_user_string() == f"strategies/{PROBE}/divergence"


def test_an_ecs_bot_uploads_its_trades_with_its_heartbeat_and_a_local_bot_does_not(
    aws_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from resources.trading_state import SqliteTradingState as Store
    from tradai_bot.runtime import BotRuntime, BotSettings

    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", aws_env.region)
    bucket = f"configs-{tmp_path.name.lower().replace('_', '-')[:40]}"
    aws_env.client("s3").create_bucket(Bucket=bucket)
    database = tmp_path / "trades.sqlite"
    shutil.copyfile(CLEAN["database"], database)

    def runtime(config_path: str) -> BotRuntime:
        settings = BotSettings(
            strategy=PROBE, strategy_id=PROBE_ID, trading_mode="dry_run", config_path=config_path, heartbeat_seconds=60
        )
        made = BotRuntime(settings, strategy_path=tmp_path, workdir=tmp_path, store=Store(path=str(tmp_path / "s.db")))
        made.database = database  # what prepare() chose: the --db-url file
        return made

    ecs = runtime(f"s3://{bucket}/bots/{PROBE_ID}/config-1.json")
    from types import SimpleNamespace

    from freqtrade.enums import State

    ecs.tick(freqtrade=SimpleNamespace(state=State.RUNNING))  # due at once: a heartbeat, then the upload

    assert ecs.uploads == 1 and ecs.heartbeats.written == 1
    uploaded = S3BotTrades(stack="dev", bucket=bucket, endpoint_url=aws_env.url, region=aws_env.region).read(PROBE_ID)
    assert len(uploaded.trades) == 6
    local = runtime(str(tmp_path / "config.json"))
    assert local.upload_trades() is None and local.uploads == 0


def test_the_simulators_book_shift_holds_the_book_away_for_its_count_and_refuses_bad_values(fake_binance_clean):
    import httpx

    from tests.fakes.client import FakeBinanceError

    fake_binance_clean.control(now_ms="2026-01-05T12:00:00Z")

    def best() -> tuple[float, float]:
        book = httpx.get(f"{fake_binance_clean.url}/api/v3/depth", params={"symbol": "LTCBTC", "limit": 5}).json()
        return float(book["bids"][0][0]), float(book["asks"][0][0])

    bid, ask = best()
    fake_binance_clean.add_rule(path="/api/v3/depth", symbol="LTCBTC", book_shift_bps=100, times=2)
    shifted = [best(), best()]

    assert all(b <= bid * 0.99 + 1e-12 and a >= ask * 1.01 - 1e-12 for b, a in shifted)
    assert best() == (bid, ask)  # the rule is spent
    assert fake_binance_clean.stats()["injected"]["book_shift_bps"] == 2
    with pytest.raises(FakeBinanceError, match="book_shift_bps must be 0-10000"):
        fake_binance_clean.add_rule(path="/api/v3/depth", book_shift_bps=-5)
