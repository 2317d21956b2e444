"""Reachability of what the API stands on; no token needed (load balancers and humans ask it).

Anyone sees whether each component answers; only a token with the admin scope sees where each one is
and what it answered (URLs, store paths, error messages), which would help an attacker."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from fastapi import APIRouter, Depends

from tradai_api.auth import ADMIN, Principal
from tradai_api.deps import Services, optional_principal, services
from tradai_api.schemas import Health

router = APIRouter(prefix="/api/v1", tags=["health"])
CHECK_TIMEOUT_SECONDS = 10.0


def timed(check: Callable[[], str]) -> Callable[[], dict]:
    def run() -> dict:
        started = time.monotonic()
        try:
            detail, ok = check(), True
        except Exception as exc:  # a health probe reports any failure of the component as its state
            detail, ok = f"{type(exc).__name__}: {exc}"[:500], False
        return {"ok": ok, "detail": detail, "latency_ms": round(1000 * (time.monotonic() - started), 1)}

    return run


@router.get("/health", response_model=Health, response_model_exclude_none=True,
            summary="Dagster, ArcticDB and MLflow reachability")
def health(principal: Principal | None = Depends(optional_principal), svc: Services = Depends(services)):
    """Always 200 while the API answers; `status` is `degraded` when a component is unreachable.
    A token with the `admin` scope also gets each component's `detail` and `latency_ms`."""
    checks = {
        "dagster": lambda: f"{svc.dagster.graphql_url} answers (Dagster {svc.dagster.version()})",
        "arcticdb": svc.market_data.check,
        "mlflow": svc.artifacts.check,
    }
    # A hung store must not hang the probe: each check gets its own thread and a deadline.
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="tradai-health")
    try:
        futures = {name: pool.submit(timed(check)) for name, check in checks.items()}
        results = {}
        deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS
        for name, future in futures.items():
            try:
                results[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                results[name] = {"ok": False, "detail": f"no answer within {CHECK_TIMEOUT_SECONDS:g} s", "latency_ms": 1000 * CHECK_TIMEOUT_SECONDS}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    status = "ok" if all(r["ok"] for r in results.values()) else "degraded"
    if principal is None or ADMIN not in principal.scopes:
        results = {name: {"ok": r["ok"]} for name, r in results.items()}
    return {"status": status, "checks": results}
