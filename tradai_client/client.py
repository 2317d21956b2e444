"""A small Python client of the TradAI API, for scripts, notebooks and the ``tradai`` CLI.

    from tradai_client.client import TradaiClient
    api = TradaiClient()                      # URL and token from the environment or the config file
    job = api.submit_backtest("SampleStrategy", timerange="20180115-20180125")
    done = api.wait(job["job_id"])
    done["metrics"], api.trades_frame(job["job_id"])

The URL comes from the argument, else ``TRADAI_API_URL``, else the config file, else
http://127.0.0.1:8000; the token likewise from ``TRADAI_API_TOKEN`` or the config file. The config file
is ``TRADAI_CONFIG`` or ``~/.config/tradai/config.toml`` with top-level ``url`` and ``token`` keys.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = frozenset({"SUCCEEDED", "FAILED", "CANCELED"})
# A sweep is done once its summary covers every trial, or when it was cancelled or refused.
SWEEP_DONE = frozenset({"summarised", "cancelled", "planning_failed"})


class ApiError(Exception):
    """The API answered with an error status; ``detail`` is its explanation."""

    def __init__(self, status: int, detail: Any, retry_after: float | None = None):
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}: {format_detail(detail)}")


def format_detail(detail: Any) -> str:
    """FastAPI's validation errors are a list of {loc, msg}: one line each."""
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []) if p != 'body')}: {d.get('msg')}" if isinstance(d, dict) else str(d)
            for d in detail
        )
    return str(detail)


def config_path() -> Path:
    return Path(os.environ.get("TRADAI_CONFIG", Path.home() / ".config" / "tradai" / "config.toml"))


def read_config(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from exc


class TradaiClient:
    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        config = read_config() if url is None or token is None else {}
        self.url = (url or os.environ.get("TRADAI_API_URL") or config.get("url") or DEFAULT_URL).rstrip("/")
        self.token = token or os.environ.get("TRADAI_API_TOKEN") or config.get("token")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "TradaiClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            retry_after = response.headers.get("Retry-After")
            raise ApiError(response.status_code, detail, float(retry_after) if retry_after else None)
        return response.json()

    # Health -------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/api/v1/health")

    # Backtests ----------------------------------------------------------------------------------

    def submit_backtest(
        self,
        strategy: str,
        *,
        timerange: str | None = None,
        pairs: list[str] | None = None,
        timeframe: str | None = None,
        overrides: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"strategy": strategy}
        for key, value in (("timerange", timerange), ("pairs", pairs), ("timeframe", timeframe), ("overrides", overrides)):
            if value is not None:
                body[key] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/api/v1/backtests", json=body, headers=headers)

    def backtests(
        self, *, strategy: str | None = None, status: list[str] | str | None = None, limit: int = 20, cursor: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if strategy:
            params["strategy"] = strategy
        if status:
            params["status"] = [status] if isinstance(status, str) else status
        if cursor:
            params["cursor"] = cursor
        return self.request("GET", "/api/v1/backtests", params=params)

    def backtest(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/backtests/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/backtests/{job_id}/cancel")

    def equity(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/backtests/{job_id}/equity")

    def trades(self, job_id: str) -> list[dict[str, Any]]:
        """Every trade, fetched a page at a time."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", f"/api/v1/backtests/{job_id}/trades", params={"offset": len(out), "limit": 10000})
            out += page["items"]
            if not page["items"] or len(out) >= page["total"]:
                return out

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_seconds: float = 2.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        path: str = "/api/v1/backtests/{job_id}",
    ) -> dict[str, Any]:
        """Poll the job until it has finished; ``on_update`` sees every answer. Honours 429 Retry-After."""
        return self._poll(lambda: self.request("GET", path.format(job_id=job_id)), "status", FINISHED,
                          f"job {job_id}", timeout, poll_seconds, on_update)

    def _poll(self, fetch, field: str, done, what: str, timeout, poll_seconds: float, on_update) -> dict[str, Any]:
        """``fetch()`` until its answer's ``field`` is one of ``done``; a 429 waits its Retry-After."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                answer = fetch()
            except ApiError as exc:
                if exc.status != 429:
                    raise
                time.sleep(exc.retry_after or poll_seconds)
                continue
            if on_update is not None:
                on_update(answer)
            if answer[field] in done:
                return answer
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{what} is still {answer[field]} after {timeout} s")
            time.sleep(poll_seconds)

    # Sweeps -------------------------------------------------------------------------------------

    def start_sweep(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``spec``: the sweep's fields (strategy, timerange, budget, search, grid, ranges, objective, ...)."""
        return self.request("POST", "/api/v1/sweeps", json=spec)

    def sweeps(self, *, strategy: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"strategy": strategy} if strategy else {})}
        return self.request("GET", "/api/v1/sweeps", params=params)["items"]

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/sweeps/{sweep_id}")

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/sweeps/{sweep_id}/cancel")

    def sweep_results(self, sweep_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/sweeps/{sweep_id}/results")

    def catalog(self) -> dict[str, Any]:
        return self.request("GET", "/api/v1/catalog/strategies")

    def catalog_strategy(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/catalog/strategies/{name}")

    def compare(self, name: str, limit: int = 20) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/catalog/strategies/{name}/compare", params={"limit": limit})

    def wait_sweep(
        self,
        sweep_id: str,
        *,
        timeout: float | None = None,
        poll_seconds: float = 2.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the sweep until it is summarised, cancelled or refused; honours 429 Retry-After."""
        return self._poll(lambda: self.sweep(sweep_id), "state", SWEEP_DONE, f"sweep {sweep_id}", timeout,
                          poll_seconds, on_update)

    def equity_frame(self, job_id: str):
        """The equity curve as a pandas DataFrame indexed by UTC date."""
        import pandas as pd

        points = self.equity(job_id)["points"]
        frame = pd.DataFrame(points, columns=["date", "equity"])
        frame["date"] = pd.to_datetime(frame["date"], utc=True)
        return frame.set_index("date")

    def trades_frame(self, job_id: str):
        """The trades as a pandas DataFrame, dates as UTC timestamps."""
        import pandas as pd

        frame = pd.DataFrame(self.trades(job_id))
        for column in ("open_date", "close_date"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    # Strategies ---------------------------------------------------------------------------------

    def strategies(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/strategies")["items"]

    def strategy(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/strategies/{name}")

    # Market data --------------------------------------------------------------------------------

    def symbols(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/data/symbols")["markets"]

    def freshness(self) -> dict[str, Any]:
        return self.request("GET", "/api/v1/data/freshness")

    def sync(
        self, *, exchange: str | None = None, market_type: str | None = None, start: str | None = None, end: str | None = None
    ) -> dict[str, Any]:
        body = {k: v for k, v in (("exchange", exchange), ("market_type", market_type), ("start", start), ("end", end)) if v}
        return self.request("POST", "/api/v1/data/sync", json=body)

    def sync_status(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/data/sync/{job_id}")

    # Models -------------------------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        """Model strategies and registered models, with their aliases."""
        return self.request("GET", "/api/v1/models")["items"]

    def model_versions(self, name: str) -> list[dict[str, Any]]:
        return self.request("GET", f"/api/v1/models/{name}/versions")["items"]

    def model_audit(self, name: str) -> list[dict[str, Any]]:
        """Every decision and alias move, oldest first."""
        return self.request("GET", f"/api/v1/models/{name}/audit")["items"]

    def promote(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Make the challenger (or ``version``) the champion."""
        return self.request("POST", f"/api/v1/models/{name}/promote", json={} if version is None else {"version": version})

    def rollback(self, name: str, to_version: int | None = None) -> dict[str, Any]:
        """Move the champion back to ``previous`` (or ``to_version``)."""
        body = {} if to_version is None else {"to_version": to_version}
        return self.request("POST", f"/api/v1/models/{name}/rollback", json=body)

    def train(self, name: str) -> dict[str, Any]:
        """Launch a run materialising the model's training asset."""
        return self.request("POST", f"/api/v1/models/{name}/train")

    # Bots ---------------------------------------------------------------------------------------

    def bots(self) -> dict[str, Any]:
        """Every bot with its backend state and health: ``{checked_at, max_heartbeat_age_seconds, items}``."""
        return self.request("GET", "/api/v1/bots")

    def bot(self, name: str) -> dict[str, Any]:
        """A bot by strategy class name or bot id."""
        return self.request("GET", f"/api/v1/bots/{name}")

    def start_bot(self, name: str, *, mode: str = "dry_run", force: bool = False) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/bots/{name}/start", json={"mode": mode, "force": force})

    def stop_bot(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/api/v1/bots/{name}/stop")

    def kill_switch(self, *, include_dry_run: bool = False) -> dict[str, Any]:
        """Stop every live bot (and the dry-run ones too with ``include_dry_run``) at once."""
        return self.request("POST", "/api/v1/bots/kill-switch", json={"include_dry_run": include_dry_run})
