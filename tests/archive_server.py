"""A local stand-in for Binance's public data archive: archive-shaped files written from candle frames,
served over HTTP from a directory, with the ETag and Last-Modified headers the real archive sends.

    python -m tests.archive_server ROOT [--port 0]   # prints LISTENING http://127.0.0.1:PORT

Tests and benchmarks write files with :func:`write_candles` (or break them on purpose) and start the
server with :func:`archive_server`; files changed on disk are served changed, as a re-upload is.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import io
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
from pyarrow import csv

from tests.servers import stop

REPO = Path(__file__).resolve().parent.parent
KLINE_HEADER = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
                "taker_buy_volume", "taker_buy_quote_volume", "ignore"]
FUNDING_HEADER = ["calc_time", "funding_interval_hours", "last_funding_rate"]


def kline_table(frame: pd.DataFrame, step: pd.Timedelta, microseconds: bool = False) -> pa.Table:
    """Binance's 12 kline columns from a candle frame (open time index; open..volume columns)."""
    opens = frame.index.as_unit("ms").asi8
    closes = opens + step // pd.Timedelta(1, "ms") - 1
    if microseconds:
        opens, closes = opens * 1000, closes * 1000 + 999
    volume = frame["volume"].to_numpy()
    columns = {
        "open_time": pa.array(opens), **{c: pa.array(frame[c].to_numpy()) for c in ["open", "high", "low", "close"]},
        "volume": pa.array(volume, from_pandas=True), "close_time": pa.array(closes),
        "quote_volume": pa.array(volume * frame["close"].to_numpy(), from_pandas=True),
        "count": pa.array(np.full(len(frame), 10)), "taker_buy_volume": pa.array(volume / 2, from_pandas=True),
        "taker_buy_quote_volume": pa.array(volume * frame["close"].to_numpy() / 2, from_pandas=True),
        "ignore": pa.array(np.zeros(len(frame), dtype="int64")),
    }
    return pa.table(columns)


def funding_table(frame: pd.DataFrame, interval_hours: int) -> pa.Table:
    """Binance's fundingRate columns from a frame with the rate in ``funding_rate`` (or ``open``)."""
    rates = frame["funding_rate"] if "funding_rate" in frame else frame["open"]
    return pa.table({
        "calc_time": pa.array(frame.index.as_unit("ms").asi8),
        "funding_interval_hours": pa.array(np.full(len(frame), interval_hours)),
        "last_funding_rate": pa.array(rates.to_numpy()),
    })


def csv_bytes(table: pa.Table, header: bool) -> bytes:
    out = io.BytesIO()
    csv.write_csv(table, out, csv.WriteOptions(include_header=header, quoting_style="none"))
    return out.getvalue()


def write_file(root: Path, path: str, csv_data: bytes) -> Path:
    """A zip holding one CSV named as the zip, and its ``.CHECKSUM``."""
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr(target.name.removesuffix(".zip") + ".csv", csv_data)
    write_raw(root, path, buffer.getvalue())
    return target


def write_raw(root: Path, path: str, content: bytes, checksum: str | None = None) -> None:
    """Exactly these bytes as the zip, with a ``.CHECKSUM`` of them (or of ``checksum``)."""
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)
    digest = checksum or hashlib.sha256(content).hexdigest()
    (root / f"{path}.CHECKSUM").write_text(f"{digest}  {target.name}\n")


def klines_path(market: str, period: str, symbol: str, interval: str, kind: str = "klines") -> str:
    scope = "daily" if len(period) == 10 else "monthly"
    return f"data/{market}/{scope}/{kind}/{symbol}/{interval}/{symbol}-{interval}-{period}.zip"


def funding_path(market: str, symbol: str, month: str) -> str:
    return f"data/{market}/monthly/fundingRate/{symbol}/{symbol}-fundingRate-{month}.zip"


def write_candles(
    root: Path,
    market: str,
    symbol: str,
    interval: str,
    frame: pd.DataFrame,
    kind: str = "klines",
    daily: bool = False,
    header: bool = False,
    microseconds: bool = False,
) -> list[str]:
    """One file per month (or day) of ``frame``, as the archive lays them out; returns their paths."""
    step = pd.Timedelta(interval)
    paths = []
    for period, part in frame.groupby(frame.index.strftime("%Y-%m-%d" if daily else "%Y-%m"), sort=True):
        path = klines_path(market, period, symbol, interval, kind)
        table = kline_table(part, step, microseconds)
        write_file(root, path, csv_bytes(table, header))
        paths.append(path)
    return paths


def write_funding(root: Path, market: str, symbol: str, frame: pd.DataFrame, interval_hours: int = 8) -> list[str]:
    paths = []
    for month, part in frame.groupby(frame.index.strftime("%Y-%m"), sort=True):
        path = funding_path(market, symbol, month)
        write_file(root, path, csv_bytes(funding_table(part, interval_hours), header=True))
        paths.append(path)
    return paths


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        root: Path = self.server.root  # type: ignore[attr-defined]
        target = (root / unquote(urlsplit(self.path).path).lstrip("/")).resolve()
        if root not in target.parents or not target.is_file():
            body = b"<Error><Code>NoSuchKey</Code></Error>"
            self.send_response(404)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        content = target.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/zip" if target.suffix == ".zip" else "text/plain")
        self.send_header("Content-Length", str(len(content)))
        # As S3 behind the real archive: the ETag is the content's MD5, Last-Modified the upload time.
        self.send_header("ETag", f'"{hashlib.md5(content).hexdigest()}"')
        self.send_header("Last-Modified", email.utils.formatdate(target.stat().st_mtime, usegmt=True))
        self.end_headers()
        self.wfile.write(content)

    def log_message(self, format: str, *args) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    server.daemon_threads = True
    server.root = args.root.resolve()  # type: ignore[attr-defined]
    print(f"LISTENING http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


@contextmanager
def archive_server(root: Path) -> Iterator[str]:
    """The archive server over ``root`` on a free port, in its own process; yields its base URL."""
    root.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.archive_server", str(root)], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        line = process.stdout.readline()
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"the archive server did not start (exit code {process.poll()}): {line!r}")
        yield line.split(" ", 1)[1].strip()
    finally:
        stop(process)


if __name__ == "__main__":
    main()
