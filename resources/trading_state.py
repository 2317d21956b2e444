"""The bots' trading state: one heartbeat row per strategy id (status, last heartbeat, open trades, profit).

Each bot writes its row every minute; the heartbeat sensor and the API read them. On AWS the rows live
in the DynamoDB table ``tradai-trading-state-<stack>`` (key ``strategy_id``, TTL attribute
``expires_at``, both from ``resources.aws_contract``); in development in a SQLite file,
``$TRADAI_HOME/bots/state.db``, which several bot processes can write at once.

Both implement ``TradingState``, the type every reader and writer takes.

Beside the heartbeats they keep one pause request per bot (``PauseRequest``): the platform's desired
state "entries paused" or "entries allowed", written by the stale-data sensor and applied by the bot
at its next heartbeat (the bot then reports the status ``paused``). In DynamoDB a request is an item
of the same table keyed ``pause#<strategy_id>`` (strategy ids are ``[a-z0-9-]``, so no bot's key
starts so), without a TTL; in SQLite a table of its own.

A row past its ``expires_at`` is not returned by either backend: DynamoDB deletes expired items only
eventually (up to days later), and readers must not mistake a long-dead bot for a live one.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from abc import abstractmethod
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from resources import aws_contract

BOT_STATUSES = ("starting", "running", "paused", "stopped", "error")  # paused: trading, no new entries
PAUSE_KEY_PREFIX = "pause#"
DEFAULT_TTL_DAYS = 30
KEY = aws_contract.TABLE_PARTITION_KEY
TTL_ATTRIBUTE = aws_contract.TABLE_TTL_ATTRIBUTE


@dataclass(frozen=True)
class Heartbeat:
    strategy_id: str
    status: str
    last_heartbeat: datetime  # timezone-aware, UTC
    open_trades: int
    profit: float  # closed and open profit in the stake currency

    def __post_init__(self) -> None:
        if not self.strategy_id:
            raise ValueError("a heartbeat needs a strategy_id")
        if self.status not in BOT_STATUSES:
            raise ValueError(f"heartbeat of {self.strategy_id}: status {self.status!r} must be one of {BOT_STATUSES}")
        if self.last_heartbeat.tzinfo is None:
            raise ValueError(f"heartbeat of {self.strategy_id}: last_heartbeat must be timezone-aware")
        if self.open_trades < 0:
            raise ValueError(f"heartbeat of {self.strategy_id}: open_trades {self.open_trades} is negative")
        object.__setattr__(self, "last_heartbeat", self.last_heartbeat.astimezone(UTC))

    @property
    def epoch(self) -> float:
        return self.last_heartbeat.timestamp()

    def age_seconds(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.last_heartbeat).total_seconds()


@dataclass(frozen=True)
class PauseRequest:
    """The platform's wish for a bot's entries: ``paused`` True stops new entries (open trades are still
    managed), False allows them again."""

    strategy_id: str
    paused: bool
    reason: str
    requested_at: datetime  # timezone-aware, UTC

    def __post_init__(self) -> None:
        if not self.strategy_id:
            raise ValueError("a pause request needs a strategy_id")
        if self.requested_at.tzinfo is None:
            raise ValueError(f"pause request of {self.strategy_id}: requested_at must be timezone-aware")
        object.__setattr__(self, "requested_at", self.requested_at.astimezone(UTC))


def _expires_at(heartbeat: Heartbeat, ttl_days: int) -> int:
    return int(heartbeat.epoch) + ttl_days * 86400


class TradingState(ConfigurableResource):
    """The bots' heartbeat rows; callers annotate their resource with this class, the definitions bind a backend."""

    @abstractmethod
    def put(self, heartbeat: Heartbeat) -> None:
        """Write the bot's row (replacing its previous heartbeat)."""

    @abstractmethod
    def get(self, strategy_id: str) -> Heartbeat | None:
        """The bot's latest heartbeat; None when there is none or it has expired."""

    @abstractmethod
    def list(self) -> list[Heartbeat]:
        """Every bot's latest heartbeat that has not expired, by strategy id."""

    @abstractmethod
    def delete(self, strategy_id: str) -> None:
        """Forget the bot's row."""

    @abstractmethod
    def put_pause(self, request: PauseRequest) -> None:
        """Record the platform's pause (or resume) request for the bot, replacing the previous one."""

    @abstractmethod
    def get_pause(self, strategy_id: str) -> PauseRequest | None:
        """The bot's latest pause request; None when the platform never asked."""


class DynamoTradingState(TradingState):
    """Heartbeats in the stack's trading-state table."""

    stack: str = Field(description="dev, staging or prod: names the table.")
    table: str | None = Field(default=None, description="Table name; the stack's trading-state table when None.")
    region: str | None = Field(default=None, description="AWS region; AWS_REGION when None.")
    endpoint_url: str | None = Field(default=None, description="AWS endpoint (a local stand-in), else boto3's.")
    ttl_days: int = Field(default=DEFAULT_TTL_DAYS, description="A row expires this long after its heartbeat.")

    _client: Any = PrivateAttr(default=None)

    @property
    def table_name(self) -> str:
        return self.table or aws_contract.trading_state_table(self.stack)

    def client(self) -> Any:
        if self._client is None:
            import boto3

            region = self.region or os.environ.get(aws_contract.EnvVar.AWS_REGION)
            if not region:
                raise ValueError(f"set the region field or {aws_contract.EnvVar.AWS_REGION}")
            from botocore.config import Config

            self._client = boto3.client(
                "dynamodb",
                region_name=region,
                endpoint_url=self.endpoint_url,
                config=Config(retries=aws_contract.adaptive_retries(6)),
            )
        return self._client

    def put(self, heartbeat: Heartbeat) -> None:
        self.client().put_item(
            TableName=self.table_name,
            Item={
                KEY: {"S": heartbeat.strategy_id},
                "status": {"S": heartbeat.status},
                "last_heartbeat": {"S": heartbeat.last_heartbeat.isoformat()},
                "last_heartbeat_epoch": {"N": str(Decimal(str(heartbeat.epoch)))},
                "open_trades": {"N": str(heartbeat.open_trades)},
                "profit": {"N": str(Decimal(repr(float(heartbeat.profit))))},
                TTL_ATTRIBUTE: {"N": str(_expires_at(heartbeat, self.ttl_days))},
            },
        )

    def get(self, strategy_id: str) -> Heartbeat | None:
        item = self.client().get_item(
            TableName=self.table_name, Key={KEY: {"S": strategy_id}}, ConsistentRead=True
        ).get("Item")
        return None if item is None or _expired(item) else _from_item(item)

    def list(self) -> list[Heartbeat]:
        """Every bot's latest heartbeat, by strategy id."""
        heartbeats = []
        for page in self.client().get_paginator("scan").paginate(TableName=self.table_name, ConsistentRead=True):
            heartbeats += [_from_item(item) for item in page["Items"]
                           if not _expired(item) and not item[KEY]["S"].startswith(PAUSE_KEY_PREFIX)]
        return sorted(heartbeats, key=lambda h: h.strategy_id)

    def delete(self, strategy_id: str) -> None:
        self.client().delete_item(TableName=self.table_name, Key={KEY: {"S": strategy_id}})

    def put_pause(self, request: PauseRequest) -> None:
        self.client().put_item(
            TableName=self.table_name,
            Item={
                KEY: {"S": PAUSE_KEY_PREFIX + request.strategy_id},
                "paused": {"BOOL": request.paused},
                "reason": {"S": request.reason},
                "requested_at": {"S": request.requested_at.isoformat()},
            },
        )

    def get_pause(self, strategy_id: str) -> PauseRequest | None:
        item = self.client().get_item(
            TableName=self.table_name, Key={KEY: {"S": PAUSE_KEY_PREFIX + strategy_id}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            return None
        return PauseRequest(strategy_id, item["paused"]["BOOL"], item["reason"]["S"],
                            datetime.fromisoformat(item["requested_at"]["S"]))


def _expired(item: dict[str, Any]) -> bool:
    return TTL_ATTRIBUTE in item and int(item[TTL_ATTRIBUTE]["N"]) <= time.time()


def _from_item(item: dict[str, Any]) -> Heartbeat:
    return Heartbeat(
        strategy_id=item[KEY]["S"],
        status=item["status"]["S"],
        last_heartbeat=datetime.fromisoformat(item["last_heartbeat"]["S"]),
        open_trades=int(item["open_trades"]["N"]),
        profit=float(item["profit"]["N"]),
    )


def default_state_path() -> Path:
    home = Path(os.environ.get(aws_contract.EnvVar.TRADAI_HOME, Path(__file__).resolve().parent.parent / ".tradai"))
    return home / "bots" / "state.db"


_INITIALISED: set[Path] = set()


def _initialise(database: Path) -> None:
    """Switches the file to WAL and creates the table, one process at a time.

    SQLite answers "database is locked" at once, without waiting for its busy timeout, when two
    connections change the journal mode of a new file together; a file lock beside the database
    serialises the first connection of each process instead.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{database}.init-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with closing(sqlite3.connect(database, timeout=30)) as connection:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                f"""CREATE TABLE IF NOT EXISTS heartbeats (
                    {KEY} TEXT PRIMARY KEY,
                    status TEXT NOT NULL,
                    last_heartbeat TEXT NOT NULL,
                    last_heartbeat_epoch REAL NOT NULL,
                    open_trades INTEGER NOT NULL,
                    profit REAL NOT NULL,
                    {TTL_ATTRIBUTE} INTEGER NOT NULL
                )"""
            )
            connection.execute(
                f"""CREATE TABLE IF NOT EXISTS pause_requests (
                    {KEY} TEXT PRIMARY KEY,
                    paused INTEGER NOT NULL,
                    reason TEXT NOT NULL,
                    requested_at TEXT NOT NULL
                )"""
            )


class SqliteTradingState(TradingState):
    """Heartbeats in a local SQLite file (development); safe for several writing processes."""

    path: str | None = Field(default=None, description="The database file; $TRADAI_HOME/bots/state.db when None.")
    ttl_days: int = Field(default=DEFAULT_TTL_DAYS, description="A row expires this long after its heartbeat.")

    @property
    def database(self) -> Path:
        return Path(self.path) if self.path else default_state_path()

    def _connect(self) -> sqlite3.Connection:
        database = self.database
        if database not in _INITIALISED or not database.exists():
            _initialise(database)
            _INITIALISED.add(database)
        # Bots write concurrently: wait for the lock rather than fail (WAL lets readers run beside a writer).
        return sqlite3.connect(database, timeout=30)

    def put(self, heartbeat: Heartbeat) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute(
                "INSERT OR REPLACE INTO heartbeats VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    heartbeat.strategy_id,
                    heartbeat.status,
                    heartbeat.last_heartbeat.isoformat(),
                    heartbeat.epoch,
                    heartbeat.open_trades,
                    float(heartbeat.profit),
                    _expires_at(heartbeat, self.ttl_days),
                ),
            )

    def get(self, strategy_id: str) -> Heartbeat | None:
        rows = self._select(f"WHERE {KEY} = ?", (strategy_id,))
        return rows[0] if rows else None

    def list(self) -> list[Heartbeat]:
        return self._select("", ())

    def delete(self, strategy_id: str) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute(f"DELETE FROM heartbeats WHERE {KEY} = ?", (strategy_id,))

    def put_pause(self, request: PauseRequest) -> None:
        with closing(self._connect()) as connection, connection:
            connection.execute(
                "INSERT OR REPLACE INTO pause_requests VALUES (?, ?, ?, ?)",
                (request.strategy_id, int(request.paused), request.reason, request.requested_at.isoformat()),
            )

    def get_pause(self, strategy_id: str) -> PauseRequest | None:
        with closing(self._connect()) as connection:
            row = connection.execute(
                f"SELECT paused, reason, requested_at FROM pause_requests WHERE {KEY} = ?", (strategy_id,)
            ).fetchone()
        if row is None:
            return None
        return PauseRequest(strategy_id, bool(row[0]), row[1], datetime.fromisoformat(row[2]))

    def _select(self, where: str, parameters: tuple) -> list[Heartbeat]:
        live = f"{TTL_ATTRIBUTE} > ?"
        condition = f"{where} AND {live}" if where else f"WHERE {live}"
        with closing(self._connect()) as connection:
            rows = connection.execute(
                f"SELECT {KEY}, status, last_heartbeat, open_trades, profit FROM heartbeats {condition} "
                f"ORDER BY {KEY}",
                (*parameters, int(time.time())),
            ).fetchall()
        return [
            Heartbeat(
                strategy_id=strategy_id,
                status=status,
                last_heartbeat=datetime.fromisoformat(last_heartbeat),
                open_trades=open_trades,
                profit=profit,
            )
            for strategy_id, status, last_heartbeat, open_trades, profit in rows
        ]
