"""The bots' heartbeat store: DynamoDB on a moto server, and the local SQLite file."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from resources import aws_contract
from resources.trading_state import DynamoTradingState, Heartbeat, PauseRequest, SqliteTradingState

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dynamo_store(aws_env) -> DynamoTradingState:
    table = f"{aws_contract.trading_state_table('dev')}-{uuid.uuid4().hex[:8]}"
    dynamodb = aws_env.client("dynamodb")
    # The table as infra/storage.py declares it.
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": aws_contract.TABLE_PARTITION_KEY, "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": aws_contract.TABLE_PARTITION_KEY, "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": aws_contract.TABLE_TTL_ATTRIBUTE},
    )
    return DynamoTradingState(stack="dev", table=table, region=aws_env.region, endpoint_url=aws_env.url)


@pytest.fixture
def sqlite_store(tradai_home: Path) -> SqliteTradingState:
    return SqliteTradingState()


@pytest.fixture(params=[pytest.param("dynamo", marks=pytest.mark.integration), "sqlite"])
def store(request):
    return request.getfixturevalue(f"{request.param}_store")


def beat(strategy_id: str, *, ago: timedelta = timedelta(0), **fields) -> Heartbeat:
    values = {"status": "running", "open_trades": 2, "profit": 0.01778197}
    return Heartbeat(
        strategy_id=strategy_id,
        last_heartbeat=datetime.now(UTC).replace(microsecond=0) - ago,
        **{**values, **fields},
    )


def test_put_get_and_list_round_trip_the_latest_heartbeat_per_bot(store):
    first = beat("sample-binance-spot", ago=timedelta(seconds=60), open_trades=1)
    latest = beat("sample-binance-spot", open_trades=3, profit=-0.5)
    other = beat("ema-binance-futures", status="stopped", open_trades=0, profit=0.0)

    assert store.get("sample-binance-spot") is None
    store.put(first)
    store.put(latest)
    store.put(other)

    assert store.get("sample-binance-spot") == latest
    assert store.list() == [other, latest]
    store.delete("ema-binance-futures")
    assert store.list() == [latest]


def test_a_pause_request_round_trips_beside_the_heartbeats_without_showing_in_them(store):
    at = datetime.now(UTC).replace(microsecond=0)
    store.put(beat("sample-binance-spot"))
    assert store.get_pause("sample-binance-spot") is None

    store.put_pause(PauseRequest("sample-binance-spot", True, "ETH/BTC 5m candles 3 h old", at))
    assert store.get_pause("sample-binance-spot") == PauseRequest("sample-binance-spot", True,
                                                                   "ETH/BTC 5m candles 3 h old", at)
    resumed = PauseRequest("sample-binance-spot", False, "candles fresh", at + timedelta(minutes=5))
    store.put_pause(resumed)
    assert store.get_pause("sample-binance-spot") == resumed
    assert [h.strategy_id for h in store.list()] == ["sample-binance-spot"]  # the request is no heartbeat
    assert store.get_pause("other-bot") is None
    with pytest.raises(ValueError, match="pause request of x: requested_at must be timezone-aware"):
        PauseRequest("x", True, "r", datetime(2026, 1, 1))


def test_expired_rows_are_not_returned(store):
    store.put(beat("long-dead", ago=timedelta(days=31)))
    store.put(beat("recent", ago=timedelta(days=29)))

    assert store.get("long-dead") is None
    assert [h.strategy_id for h in store.list()] == ["recent"]


def test_the_dynamodb_item_carries_iso_time_epoch_and_ttl(dynamo_store, moto):
    heartbeat = beat("sample-binance-spot", ago=timedelta(minutes=5))
    dynamo_store.put(heartbeat)

    item = moto.client("dynamodb").get_item(
        TableName=dynamo_store.table_name, Key={"strategy_id": {"S": "sample-binance-spot"}}
    )["Item"]
    assert item["last_heartbeat"]["S"] == heartbeat.last_heartbeat.isoformat()
    assert item["last_heartbeat"]["S"].endswith("+00:00")
    assert float(item["last_heartbeat_epoch"]["N"]) == heartbeat.last_heartbeat.timestamp()
    assert int(item["expires_at"]["N"]) == int(heartbeat.last_heartbeat.timestamp()) + 30 * 86400
    assert (item["status"]["S"], item["open_trades"]["N"], item["profit"]["N"]) == ("running", "2", "0.01778197")


def test_the_default_table_and_file_follow_the_contract(tradai_home):
    assert DynamoTradingState(stack="prod").table_name == "tradai-trading-state-prod"
    assert SqliteTradingState().database == tradai_home / "bots" / "state.db"


def test_heartbeat_times_are_stored_in_utc():
    paris = timezone(timedelta(hours=1))
    heartbeat = Heartbeat(
        strategy_id="s", status="running", last_heartbeat=datetime(2026, 1, 1, 13, tzinfo=paris),
        open_trades=0, profit=0.0,
    )
    assert heartbeat.last_heartbeat == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert heartbeat.last_heartbeat.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": "sleeping"}, "status 'sleeping'"),
        ({"open_trades": -1}, "open_trades -1"),
        ({"last_heartbeat": datetime(2026, 1, 1)}, "timezone-aware"),
    ],
)
def test_bad_heartbeats_are_refused(fields, message):
    values = {
        "strategy_id": "s", "status": "running", "open_trades": 0, "profit": 0.0,
        "last_heartbeat": datetime.now(UTC),
    }
    with pytest.raises(ValueError, match=message):
        Heartbeat(**{**values, **fields})


WRITER = """
import pathlib, sys, time
from datetime import UTC, datetime
from resources.trading_state import Heartbeat, SqliteTradingState
store = SqliteTradingState(path=sys.argv[1])
pathlib.Path(sys.argv[1] + "." + sys.argv[2] + ".ready").touch()
while not pathlib.Path(sys.argv[1] + ".go").exists():  # start writing together, not one after another
    time.sleep(0.01)
for n in range(40):
    store.put(Heartbeat(strategy_id=sys.argv[2], status="running", last_heartbeat=datetime.now(UTC),
                        open_trades=n, profit=float(n)))
"""


def test_several_bot_processes_write_the_local_store_at_once(tmp_path: Path):
    database = tmp_path / "bots" / "state.db"
    database.parent.mkdir(parents=True)
    bots = [f"bot-{n}" for n in range(5)]
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(database), bot], cwd=PROJECT_ROOT, stderr=subprocess.PIPE)
        for bot in bots
    ]
    deadline = time.monotonic() + 60
    while not all(Path(f"{database}.{bot}.ready").exists() for bot in bots):
        assert time.monotonic() < deadline and all(w.poll() is None for w in writers), "a writer did not start"
        time.sleep(0.05)
    Path(f"{database}.go").touch()
    for writer in writers:
        _, errors = writer.communicate(timeout=60)
        assert writer.returncode == 0, errors.decode()

    heartbeats = SqliteTradingState(path=str(database)).list()
    assert [(h.strategy_id, h.open_trades) for h in heartbeats] == [(bot, 39) for bot in bots]
