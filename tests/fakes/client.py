"""Start, steer and stop the local simulated Binance exchange (:mod:`simulator.binance`) from tests.

The server runs as a subprocess on 127.0.0.1 (a free port by default) and is stopped by process id::

    with FakeBinance() as fake:
        exchange = ccxt.binance(fake.ccxt_config("futures"))
        exchange.load_markets()
        fake.add_rule(path="/fapi/v1/klines", status=429, times=2)
        fake.control(now_ms="2024-01-01T00:02:30Z")
        assert fake.candles_served("BTCUSDT") == ...

For freqtrade, put ``fake.ccxt_config(...)["urls"]`` into the exchange's ``ccxt_config`` and also
set ``"enable_ws": false`` (no websockets here) and ``"only_from_ccxt": true`` (no
data.binance.vision downloads) in the ``exchange`` section.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tradai_core.binance_urls import ccxt_config

PROJECT_ROOT = Path(__file__).resolve().parents[2]

_UNSET: Any = object()


class FakeBinanceError(RuntimeError):
    """The server could not be started, or refused a control request."""


class FakeBinance:
    """A fake Binance server in a subprocess.

    :param config: server config -- a dict (see ``FakeExchange.from_config`` in
        :mod:`simulator.binance`: ``seed``, ``spot``, ``futures``, ``now_ms``, ``clock_speed``) or
        the path of such a JSON file.
    :param spot, futures: market lists (dicts, see ``Market``) replacing the defaults; they
        override the same keys of ``config``.
    :param seed: generator seed (default 0).
    :param now_ms: initial frozen clock (ms or ISO date); real time by default.
    :param data_dir: freqtrade data directory whose candles replace generated ones.
    :param verbose: log every request to the server's stderr.
    """

    def __init__(
        self,
        *,
        config: dict[str, Any] | str | Path | None = None,
        spot: list[dict[str, Any]] | None = None,
        futures: list[dict[str, Any]] | None = None,
        seed: int | None = None,
        now_ms: int | str | None = None,
        data_dir: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
        verbose: bool = False,
    ):
        if isinstance(config, str | Path):
            config = json.loads(Path(config).read_text())
        self._config = dict(config or {})
        overrides = {"spot": spot, "futures": futures, "seed": seed, "now_ms": now_ms}
        self._config |= {k: v for k, v in overrides.items() if v is not None}
        self._data_dir = data_dir
        self._host, self._requested_port = host, port
        self._startup_timeout = startup_timeout
        self._verbose = verbose
        self._process: subprocess.Popen[str] | None = None
        self._config_file: str | None = None
        self.url = ""
        self.port = 0
        self.returncode: int | None = None  # exit code once stopped

    # ------------------------------------------------------------------ lifecycle

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> FakeBinance:
        """Start the server and wait for its ``LISTENING`` line."""
        if self._process is not None:
            raise FakeBinanceError("already started")
        command = [
            sys.executable, "-m", "simulator",
            "--host", self._host, "--port", str(self._requested_port),
            "--parent-pid", str(os.getpid()),  # no orphaned server if this process dies
        ]
        if self._config:
            fd, self._config_file = tempfile.mkstemp(prefix="fake-binance-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(self._config, f)
            command += ["--config", self._config_file]
        if self._data_dir is not None:
            command += ["--data-dir", str(self._data_dir)]
        if self._verbose:
            command.append("--verbose")
        env = dict(os.environ)
        paths = [str(PROJECT_ROOT), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        self._process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            line = self._read_line(self._startup_timeout)
            if not line.startswith("LISTENING "):
                raise FakeBinanceError(f"unexpected first line from the server: {line!r}")
        except BaseException:
            self.stop()
            raise
        self.url = line.split(" ", 1)[1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self

    def _read_line(self, timeout: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FakeBinanceError(f"the fake Binance server did not start within {timeout} s")
            ready, _, _ = select.select([self._process.stdout], [], [], min(remaining, 0.5))
            if ready:
                line = self._process.stdout.readline()
                if line:
                    return line
            if self._process.poll() is not None:
                raise FakeBinanceError(
                    f"the fake Binance server exited with code {self._process.returncode} "
                    "(its stderr shows why)"
                )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the server by pid, wait, SIGKILL if it does not exit; returns its exit code."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(timeout)
            if process.stdout is not None:
                process.stdout.close()
            self.returncode = process.returncode
        self.url = ""
        if self._config_file is not None:
            Path(self._config_file).unlink(missing_ok=True)
            self._config_file = None
        return self.returncode

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ ccxt

    def ccxt_config(self, market_type: str = "spot", **extra: Any) -> dict[str, Any]:
        """Constructor config for ``ccxt.binance`` (sync or async) pointing every API here.

        ``market_type``: ``"spot"`` or ``"futures"`` (also ``"swap"``, ``"future"``, ``"linear"``),
        which sets ``options.defaultType`` (``"spot"`` / ``"swap"``).  ``extra`` keys (``apiKey``,
        ``secret``, ``timeout``, ``enableRateLimit``...) are added; a given ``options`` dict is
        merged over the default type.
        """
        if not self.url:
            raise FakeBinanceError("the server is not running")
        config = ccxt_config(self.url, market_type)
        config["options"] |= extra.pop("options", {})
        return {**config, **extra}

    # ------------------------------------------------------------------ control and stats

    def control(
        self,
        *,
        rules: list[dict[str, Any]] | None = None,
        now_ms: int | str | None = _UNSET,
        clock_speed: float | None = None,
        clear_rules: bool = False,
    ) -> dict[str, Any]:
        """Change the running server; returns its clock and active rules.

        ``rules``: fault-injection rules to add (format: ``Rule`` in :mod:`simulator.binance`).
        ``now_ms``: freeze the clock there (ms or ISO date), ``None`` for real time.
        ``clock_speed``: how fast a set clock then advances (0: frozen, 1: real time, 60: a minute
        a second).  ``clear_rules``: remove the active rules first.
        """
        payload: dict[str, Any] = {}
        if rules is not None:
            payload["rules"] = rules
        if now_ms is not _UNSET:
            payload["now_ms"] = now_ms
        if clock_speed is not None:
            payload["clock_speed"] = clock_speed
        if clear_rules:
            payload["clear_rules"] = True
        return self._call("POST", "/__control", payload)

    def add_rule(self, **rule: Any) -> dict[str, Any]:
        """Add one fault-injection rule, e.g. ``add_rule(path="/api/v3/klines", status=429,
        times=2)``; returns it as stored (with its ``id``)."""
        return self.control(rules=[rule])["rules"][-1]

    def reset(self) -> dict[str, Any]:
        """Startup clock, no rules, zeroed counters."""
        return self._call("POST", "/__reset")

    def stats(self) -> dict[str, Any]:
        """Counters (see ``FakeExchange.stats`` in :mod:`simulator.binance`)."""
        return self._call("GET", "/__stats")

    def requests_made(self, path: str | None = None) -> int:
        """API requests received for ``path`` (e.g. ``"/api/v3/klines"``), or in total."""
        counts = self.stats()["requests"]
        return sum(counts.values()) if path is None else counts.get(path, 0)

    def candles_served(
        self, symbol: str | None = None, *, path: str | None = None, interval: str | None = None
    ) -> int:
        """Candles answered by klines endpoints, optionally only for a Binance symbol id
        (``"ETHBTC"``), a klines path and/or an interval."""
        total = 0
        for klines_path, symbols in self.stats()["klines"].items():
            if path is not None and klines_path != path:
                continue
            for symbol_id, entry in symbols.items():
                if symbol is not None and symbol_id != symbol:
                    continue
                if interval is None:
                    total += entry["candles"]
                else:
                    total += entry["intervals"].get(interval, 0)
        return total

    def _call(self, method: str, path: str, payload: dict | None = None) -> dict[str, Any]:
        if not self.url:
            raise FakeBinanceError("the server is not running")
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            raise FakeBinanceError(f"{method} {path}: {e.code} {e.read().decode()}") from None
        except urllib.error.URLError as e:
            raise FakeBinanceError(f"{method} {path}: {e.reason} (did the server die?)") from e
