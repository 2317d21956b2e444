"""A bot's own trades, as its Freqtrade trade database records them.

A local bot's database is ``$TRADAI_HOME/bots/<strategy_id>/trades.sqlite`` (see
``resources.local_bots``): ``LocalBotTrades`` reads it read-only (``file:...?mode=ro``) with a
timeout, so a bot holding a write lock makes the read fail with a clear error after that timeout and
never corrupts or changes the file. An ECS bot's database lives in its container: the bot uploads
an export of it (``export_trades``, JSON) at each heartbeat and when it stops, to
``s3://<configs bucket>/bots/<strategy_id>/trades.json``, which ``S3BotTrades`` reads; the platform
needs no database it does not have.

Both give ``BotTradeLog``: one row per trade (the columns ``tradai_core.divergence`` matches on,
plus Freqtrade's own profit ratio of each closed trade, which the shadow evaluation compares) and the
bot's start time. The divergence reports and the shadow evaluation both read trades here, and nowhere else. Entry and exit times are the fills of the orders, not the times the
orders were placed: a late fill shows as a late trade.
"""

from __future__ import annotations

import json
import os
import sqlite3
from abc import abstractmethod
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from resources import aws_contract
from tradai_core.divergence import TRADE_COLUMNS

EXPORT_VERSION = 1
TRADES_OBJECT = "trades.json"


class BotTradesError(RuntimeError):
    """A bot's trades cannot be read: the message names the file or object and why."""


@dataclass(frozen=True)
class BotTradeLog:
    strategy_id: str
    source: str  # the file or s3:// object read
    trades: pd.DataFrame  # TRADE_COLUMNS plus exit_reason, stake_amount, profit_ratio
    bot_start_time: datetime | None  # when the bot first started on this database (Freqtrade's own record)
    exported_at: datetime | None = None  # ECS exports: when the bot wrote it


# Freqtrade 2026.9's schema: ``trades`` and ``orders`` (``ft_trade_id``), ``KeyValueStore``. Dates are
# naive UTC text.
_TRADES_SQL = """
SELECT t.id, t.pair, t.is_short, t.is_open, t.open_date, t.close_date, t.open_rate, t.close_rate,
       t.amount, t.stake_amount, t.fee_open_cost, t.fee_close_cost, t.close_profit_abs, t.realized_profit,
       t.close_profit, t.exit_reason,
       (SELECT MIN(o.order_filled_date) FROM orders o
         WHERE o.ft_trade_id = t.id AND o.ft_order_side = CASE WHEN t.is_short THEN 'sell' ELSE 'buy' END AND o.filled > 0) AS entry_filled,
       (SELECT MAX(o.order_filled_date) FROM orders o
         WHERE o.ft_trade_id = t.id AND o.ft_order_side <> CASE WHEN t.is_short THEN 'sell' ELSE 'buy' END AND o.filled > 0) AS exit_filled
FROM trades t ORDER BY t.id
"""
_EXPORT_COLUMNS = (
    "id",
    "pair",
    "is_short",
    "is_open",
    "open_date",
    "close_date",
    "open_rate",
    "close_rate",
    "amount",
    "stake_amount",
    "fee_open_cost",
    "fee_close_cost",
    "close_profit_abs",
    "realized_profit",
    "close_profit",
    "exit_reason",
    "entry_filled",
    "exit_filled",
)


def _utc(value: Any) -> pd.Timestamp:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return pd.NaT
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def read_database(path: Path, timeout_seconds: float = 5.0) -> dict[str, Any]:
    """The trades and start time of a Freqtrade database, as plain values (what a bot exports).

    Opened read-only: nothing is ever written to the file, and a lock held by the bot makes the
    read wait ``timeout_seconds`` and then fail naming the file."""
    if not path.is_file():
        raise BotTradesError(f"bot trade database {path} does not exist (has the bot run on this machine?)")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_seconds)) as connection:
            rows = connection.execute(_TRADES_SQL).fetchall()
            start = connection.execute(
                "SELECT datetime_value FROM KeyValueStore WHERE key = 'bot_start_time'"
            ).fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise BotTradesError(
                f"bot trade database {path} is locked by another process (waited {timeout_seconds:g} s); "
                "try again when the bot has finished writing"
            ) from exc
        raise BotTradesError(f"bot trade database {path} cannot be read as a Freqtrade database: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise BotTradesError(f"bot trade database {path} is not an SQLite database: {exc}") from exc
    return {
        "version": EXPORT_VERSION,
        "bot_start_time": start[0] if start else None,
        "trades": [dict(zip(_EXPORT_COLUMNS, row, strict=True)) for row in rows],
    }


def export_trades(database: Path, timeout_seconds: float = 5.0) -> bytes:
    """The export an ECS bot uploads: its database's trades as JSON, stamped with the export time."""
    payload = read_database(database, timeout_seconds)
    payload["exported_at"] = datetime.now(UTC).isoformat()
    return json.dumps(payload, sort_keys=True).encode()


def trade_log(strategy_id: str, source: str, payload: dict[str, Any]) -> BotTradeLog:
    if not isinstance(payload, dict) or payload.get("version") != EXPORT_VERSION or "trades" not in payload:
        raise BotTradesError(f"{source}: not a bot trade export of version {EXPORT_VERSION}")
    rows = []
    for t in payload["trades"]:
        missing = [column for column in _EXPORT_COLUMNS if column not in t]
        if missing:
            raise BotTradesError(
                f"{source}: trade {t.get('id')} lacks {', '.join(missing)}; the bot's export predates them "
                "(redeploy the bot so it uploads a current export)"
            )
        is_open = bool(t["is_open"])
        fee_cost = (t.get("fee_open_cost") or 0.0) + (t.get("fee_close_cost") or 0.0)
        rows.append(
            {
                "trade_id": int(t["id"]),
                "pair": t["pair"],
                "is_short": bool(t["is_short"]),
                # An entry not filled yet has no entry time: the trade waits for its order.
                "entry_time": _utc(t["entry_filled"]),
                "exit_time": pd.NaT if is_open else _utc(t["exit_filled"] or t["close_date"]),
                "open_rate": float(t["open_rate"]),
                "close_rate": float(t["close_rate"] or float("nan")),
                "amount": float(t["amount"]),
                "fee_cost": float(fee_cost),
                "profit_abs": float((t["close_profit_abs"] if not is_open else t["realized_profit"]) or 0.0),
                "is_open": is_open,
                "exit_reason": t.get("exit_reason"),
                "stake_amount": float(t["stake_amount"]),
                # Freqtrade's close_profit: the closed trade's profit as a fraction of its stake, fees included.
                "profit_ratio": float(t["close_profit"] if t["close_profit"] is not None else float("nan")),
            }
        )
    columns = [*TRADE_COLUMNS, "exit_reason", "stake_amount", "profit_ratio"]
    trades = pd.DataFrame(rows, columns=columns)
    for column in ("entry_time", "exit_time"):
        trades[column] = pd.to_datetime(trades[column], utc=True)
    trades = trades[trades["entry_time"].notna()].reset_index(drop=True)
    start = payload.get("bot_start_time")
    exported = payload.get("exported_at")
    return BotTradeLog(
        strategy_id,
        source,
        trades,
        _utc(start).to_pydatetime() if start else None,
        _utc(exported).to_pydatetime() if exported else None,
    )


class BotTrades(ConfigurableResource):
    """Where the platform reads a bot's trades; the definitions bind the local or the S3 backend."""

    @abstractmethod
    def read(self, strategy_id: str) -> BotTradeLog:
        """The bot's trades; ``BotTradesError`` naming the file or object when they cannot be read."""

    @abstractmethod
    def location(self, strategy_id: str) -> str:
        """Where the bot's trades are read from (a path or an s3:// URL)."""


class LocalBotTrades(BotTrades):
    """Local bots' Freqtrade databases under ``$TRADAI_HOME/bots``."""

    home: str | None = Field(default=None, description="TradAI home; $TRADAI_HOME or .tradai/ when None.")
    timeout_seconds: float = Field(default=5.0, gt=0, description="How long a read waits for a bot's write lock.")

    def database(self, strategy_id: str) -> Path:
        home = (
            self.home
            or os.environ.get(aws_contract.EnvVar.TRADAI_HOME)
            or str(Path(__file__).resolve().parent.parent / ".tradai")
        )
        return Path(home).resolve() / "bots" / strategy_id / "trades.sqlite"

    def location(self, strategy_id: str) -> str:
        return str(self.database(strategy_id))

    def read(self, strategy_id: str) -> BotTradeLog:
        path = self.database(strategy_id)
        return trade_log(strategy_id, str(path), read_database(path, self.timeout_seconds))


def trades_key(strategy_id: str) -> str:
    return f"{aws_contract.BOT_CONFIGS_PREFIX}/{strategy_id}/{TRADES_OBJECT}"


class S3BotTrades(BotTrades):
    """The exports ECS bots upload to the stack's configs bucket."""

    stack: str = Field(description="dev, staging or prod: names the configs bucket.")
    bucket: str | None = Field(
        default=None, description="The bucket the bots upload to; the stack's configs bucket when None."
    )
    region: str | None = Field(default=None, description="AWS region; AWS_REGION when None.")
    endpoint_url: str | None = Field(default=None, description="AWS endpoint (a local stand-in), else boto3's.")

    _client: Any = PrivateAttr(default=None)

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                region_name=self.region or os.environ.get(aws_contract.EnvVar.AWS_REGION),
                endpoint_url=self.endpoint_url,
            )
        return self._client

    @property
    def bucket_name(self) -> str:
        return self.bucket or aws_contract.bucket_name("configs", self.stack)

    def location(self, strategy_id: str) -> str:
        return f"s3://{self.bucket_name}/{trades_key(strategy_id)}"

    def read(self, strategy_id: str) -> BotTradeLog:
        from botocore.exceptions import BotoCoreError, ClientError

        where = self.location(strategy_id)
        try:
            body = self.client().get_object(Bucket=self.bucket_name, Key=trades_key(strategy_id))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BotTradesError(f"{where} does not exist: the bot has not uploaded its trades yet") from exc
            raise BotTradesError(f"{where} cannot be read: {exc}") from exc
        except BotoCoreError as exc:
            raise BotTradesError(f"{where} cannot be read: {exc}") from exc
        try:
            payload = json.loads(body)
        except json.JSONDecodeError as exc:
            raise BotTradesError(f"{where}: not valid JSON ({exc.msg})") from exc
        return trade_log(strategy_id, where, payload)


def upload_trades(database: Path, config_path: str, strategy_id: str, client: Any = None) -> str:
    """An ECS bot's upload: its database's export to the bucket its config came from."""
    bucket = config_path.removeprefix("s3://").partition("/")[0]
    if not config_path.startswith("s3://") or not bucket:
        raise BotTradesError(f"{config_path}: the trades go beside an s3:// config; this bot's config is local")
    if client is None:
        import boto3

        client = boto3.client("s3")
    client.put_object(
        Bucket=bucket, Key=trades_key(strategy_id), Body=export_trades(database), ContentType="application/json"
    )
    return f"s3://{bucket}/{trades_key(strategy_id)}"
