"""What every route shares: the services built once per app, and the authorisation dependency that
authenticates, rate-limits and checks the route's scope, in that order."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBearer

from tradai_api.auth import (
    Authenticator,
    AuthError,
    JwksUnavailable,
    MissingToken,
    Principal,
)
from tradai_api.dagster_client import DagsterClient, RunOutcome
from tradai_api.ratelimit import RateLimiter, retry_after_header
from tradai_api.settings import ApiSettings
from tradai_api.stores import BacktestArtifacts, BotBackends, MarketData, ModelStore, SweepRecords

# Declares the bearer scheme in the OpenAPI document (the Authorize button at /docs); the header is
# checked by ``authorize`` so that every failure gets the same 401 with a reason.
bearer_scheme = HTTPBearer(auto_error=False, description="A JWT with the scopes the route names")


@dataclass
class Services:
    settings: ApiSettings
    dagster: DagsterClient
    authenticator: Authenticator
    limiter: RateLimiter
    artifacts: BacktestArtifacts
    market_data: MarketData
    models: ModelStore
    sweeps: SweepRecords
    bots_override: BotBackends | None = None
    # Serialises "is there a run for this idempotency key? no: launch one" within this process.
    launch_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # A finished run's events never change: remember the latest outcomes.
        self.finished_run_outcome = functools.lru_cache(maxsize=256)(self.dagster.run_outcome)

    @functools.cached_property
    def bots(self) -> BotBackends:
        """Built on first use: the resources import Dagster, which takes seconds."""
        return self.bots_override or BotBackends.from_settings(self.settings)

    @classmethod
    def build(cls, settings: ApiSettings, bots: BotBackends | None = None) -> "Services":
        return cls(
            settings=settings,
            dagster=DagsterClient(settings.dagster_graphql_url, timeout=settings.dagster_timeout_seconds),
            authenticator=Authenticator(settings),
            limiter=RateLimiter(),
            artifacts=BacktestArtifacts(settings.mlflow_tracking_uri),
            market_data=MarketData(settings.arctic_uri, settings.universe_path),
            models=ModelStore(settings.mlflow_tracking_uri, settings.arctic_uri),
            sweeps=SweepRecords(settings.arctic_uri),
            bots_override=bots,
        )

    def run_outcome(self, run_id: str, finished: bool) -> RunOutcome:
        return self.finished_run_outcome(run_id) if finished else self.dagster.run_outcome(run_id)


def services(request: Request) -> Services:
    return request.app.state.services


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def unprocessable(loc: list[str], msg: str) -> HTTPException:
    """A 422 in the shape of FastAPI's own validation errors, the one the OpenAPI schema documents."""
    return HTTPException(422, [{"loc": loc, "msg": msg, "type": "value_error"}])


def too_many_requests(wait: float) -> HTTPException:
    return HTTPException(
        429, f"rate limit exceeded; retry in {retry_after_header(wait)} s", headers={"Retry-After": retry_after_header(wait)}
    )


def rate_limited_by_address(request: Request, svc: Services) -> None:
    """For requests without a token (health)."""
    wait = svc.limiter.acquire(f"address:{client_address(request)}", {"requests": svc.settings.rate_limit})
    if wait is not None:
        raise too_many_requests(wait)


def authenticated(request: Request, svc: Services, *, backtest_launch: bool = False) -> Principal:
    """The caller's principal, rate-limited by its subject; 401 (or 503 when the JWKS is unreachable)
    for a request without an acceptable token."""
    settings = svc.settings
    try:
        principal = svc.authenticator.authenticate(request.headers.get("authorization"))
    except AuthError as exc:
        # Refused attempts count against the caller's address, so guessing tokens is rate-limited too.
        wait = svc.limiter.acquire(f"address:{client_address(request)}", {"requests": settings.rate_limit})
        if wait is not None:
            raise too_many_requests(wait) from exc
        challenge = "Bearer" if isinstance(exc, MissingToken) else 'Bearer error="invalid_token"'
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": challenge}) from exc
    except JwksUnavailable as exc:
        raise HTTPException(503, str(exc)) from exc
    limits = {"requests": settings.rate_limit}
    if backtest_launch:
        limits["backtest_launches"] = settings.backtest_rate_limit
    wait = svc.limiter.acquire(f"subject:{principal.subject}", limits)
    if wait is not None:
        raise too_many_requests(wait)
    return principal


def authorize(scope: str, *, backtest_launch: bool = False):
    """The dependency of a route that needs ``scope``; ``backtest_launch`` adds the launch limit."""

    def dependency(request: Request, _=Depends(bearer_scheme), svc: Services = Depends(services)) -> Principal:
        principal = authenticated(request, svc, backtest_launch=backtest_launch)
        if scope not in principal.scopes:
            raise HTTPException(
                403, f"the token's scopes do not include {scope}",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
            )
        return principal

    return dependency


def optional_principal(request: Request, _=Depends(bearer_scheme), svc: Services = Depends(services)) -> Principal | None:
    """For the routes that answer anyone (health): None without an Authorization header, rate-limited
    by address; with one, the token must be acceptable, as on every other route."""
    if "authorization" not in request.headers:
        rate_limited_by_address(request, svc)
        return None
    return authenticated(request, svc)
