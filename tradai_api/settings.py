"""The API's settings, read from the environment once at start-up.

Names shared with the AWS deployment come from ``resources.aws_contract`` (plain Python, cheap to
import); the others are the API's own and are documented in docs/api.md.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from resources.aws_contract import EnvVar
from tradai_core import settings as tradai_settings

AUTH_MODES = ("hs256", "jwks")
# HMAC keys shorter than the hash output are brute-forceable offline from any issued token.
MIN_SECRET_BYTES = 32
DEFAULT_GRAPHQL_URL = "http://127.0.0.1:3000/graphql"
# hs256 tokens name the API as their audience unless TRADAI_API_JWT_AUDIENCE says otherwise, so a
# token minted with the same secret for another service is not accepted here.
DEFAULT_AUDIENCE = "tradai-api"


class SettingsError(ValueError):
    """A missing or invalid setting; the message names the environment variable."""


@dataclass(frozen=True)
class RateLimit:
    """``requests`` per ``seconds``, as a token bucket: bursts up to ``requests``, refilled evenly."""

    requests: int
    seconds: float

    @classmethod
    def parse(cls, text: str, variable: str) -> "RateLimit":
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([smh]?)\s*", text)
        if not match or int(match.group(1)) < 1:
            raise SettingsError(f"{variable}={text!r}: expected REQUESTS/PERIOD such as 100/5m, 10/1s or 100/300")
        amount = float(match.group(2) or 1)
        seconds = amount * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(3)]
        if seconds <= 0:
            raise SettingsError(f"{variable}={text!r}: the period must be positive")
        return cls(int(match.group(1)), seconds)

    def __str__(self) -> str:
        return f"{self.requests}/{self.seconds:g}s"


def strategies_dir() -> Path:
    """Where strategy files live; the code location reads the same variable (tradai_assets.strategies)."""
    return Path(os.environ.get("TRADAI_STRATEGIES", tradai_settings.REPO_ROOT / "strategies")).resolve()


@dataclass(frozen=True)
class ApiSettings:
    auth_mode: str = "hs256"
    jwt_secret: str | None = None
    jwt_algorithm: str = "HS256"
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    """The ``aud`` (or ``client_id``) every token must carry: ``DEFAULT_AUDIENCE`` in hs256 mode when
    None; required in jwks mode (the identity provider's app client id)."""
    scope_prefix: str = ""
    """Cognito resource-server scopes arrive as ``<identifier>/backtests:read``: the identifier to strip."""
    jwks_min_refetch_seconds: float = 30.0
    """A token with an unknown key id refetches the key set at most this often (a flood of made-up
    key ids must not turn into a flood of requests to the identity provider)."""
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(100, 300))
    backtest_rate_limit: RateLimit = field(default_factory=lambda: RateLimit(10, 1))
    max_body_bytes: int = 64 * 1024
    dagster_graphql_url: str = DEFAULT_GRAPHQL_URL
    dagster_timeout_seconds: float = 15.0
    mlflow_tracking_uri: str = field(default_factory=tradai_settings.local_mlflow_uri)
    arctic_uri: str = field(default_factory=tradai_settings.local_arctic_uri)
    strategies_dir: Path = field(default_factory=strategies_dir)
    universe_path: Path = field(default_factory=tradai_settings.universe_path)
    warm_up: bool = True
    """Import the storage libraries in the background at start-up so the first request is not slow."""
    tradai_env: str = "local"
    """Which backends hold the bots and their heartbeats: local processes and SQLite, or ECS and DynamoDB."""
    tradai_home: Path = field(default_factory=tradai_settings.tradai_home)
    """Locally: the bots' directories and heartbeat database live under ``<home>/bots``."""
    stack: str | None = None
    """On AWS: dev, staging or prod (names the ECS cluster and the trading-state table)."""
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    ecs_cluster: str | None = None
    """On AWS: the bots' cluster; the stack's cluster when None."""
    heartbeat_max_age_seconds: float = 180.0
    """A bot whose last heartbeat is older than this is unhealthy."""

    def __post_init__(self) -> None:
        if self.auth_mode not in AUTH_MODES:
            raise SettingsError(f"{EnvVar.API_AUTH}={self.auth_mode!r}: expected one of {', '.join(AUTH_MODES)}")
        if self.auth_mode == "hs256":
            if not self.jwt_secret:
                raise SettingsError(f"{EnvVar.API_AUTH}=hs256 needs {EnvVar.API_JWT_SECRET}")
            if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise SettingsError(f"{EnvVar.API_JWT_SECRET} must be at least {MIN_SECRET_BYTES} bytes long")
            if self.jwt_algorithm not in ("HS256", "HS384", "HS512"):
                raise SettingsError(f"{EnvVar.API_JWT_ALGORITHM}={self.jwt_algorithm!r}: hs256 mode signs with HS256, HS384 or HS512")
            if self.jwt_audience == "":
                raise SettingsError(f"{EnvVar.API_JWT_AUDIENCE} must not be empty (unset, it is {DEFAULT_AUDIENCE})")
        else:
            missing = [
                name for name, value in (
                    (EnvVar.API_JWKS_URL, self.jwks_url),
                    (EnvVar.API_JWT_ISSUER, self.jwt_issuer),
                    (EnvVar.API_JWT_AUDIENCE, self.jwt_audience),
                ) if not value
            ]
            if missing:
                raise SettingsError(f"{EnvVar.API_AUTH}=jwks needs {', '.join(missing)}")
        if self.tradai_env not in tradai_settings.ENVIRONMENTS:
            raise SettingsError(
                f"{EnvVar.TRADAI_ENV}={self.tradai_env!r}: expected one of {', '.join(tradai_settings.ENVIRONMENTS)}"
            )
        if self.tradai_env == "aws" and not self.stack:
            raise SettingsError(f"{EnvVar.TRADAI_ENV}=aws needs {EnvVar.TRADAI_STACK}")
        if self.max_body_bytes < 1:
            raise SettingsError("TRADAI_API_MAX_BODY_BYTES must be positive")

    @property
    def audience(self) -> str:
        return self.jwt_audience or DEFAULT_AUDIENCE

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "ApiSettings":
        env = os.environ if environ is None else environ

        def number(name: str, default: float) -> float:
            text = env.get(name)
            if text is None:
                return default
            try:
                return float(text)
            except ValueError as exc:
                raise SettingsError(f"{name}={text!r} is not a number") from exc

        return cls(
            auth_mode=env.get(EnvVar.API_AUTH, "hs256"),
            jwt_secret=env.get(EnvVar.API_JWT_SECRET),
            jwt_algorithm=env.get(EnvVar.API_JWT_ALGORITHM, "HS256"),
            jwks_url=env.get(EnvVar.API_JWKS_URL),
            jwt_issuer=env.get(EnvVar.API_JWT_ISSUER),
            jwt_audience=env.get(EnvVar.API_JWT_AUDIENCE),
            scope_prefix=env.get(EnvVar.API_SCOPE_PREFIX, ""),
            jwks_min_refetch_seconds=number("TRADAI_API_JWKS_MIN_REFETCH_SECONDS", 30.0),
            rate_limit=RateLimit.parse(env.get("TRADAI_API_RATE_LIMIT", "100/5m"), "TRADAI_API_RATE_LIMIT"),
            backtest_rate_limit=RateLimit.parse(
                env.get("TRADAI_API_BACKTEST_RATE_LIMIT", "10/1s"), "TRADAI_API_BACKTEST_RATE_LIMIT"
            ),
            max_body_bytes=int(number("TRADAI_API_MAX_BODY_BYTES", 64 * 1024)),
            dagster_graphql_url=env.get(EnvVar.DAGSTER_GRAPHQL_URL, DEFAULT_GRAPHQL_URL),
            mlflow_tracking_uri=env.get(EnvVar.MLFLOW_TRACKING_URI, tradai_settings.local_mlflow_uri()),
            arctic_uri=env.get(EnvVar.ARCTICDB_URI, tradai_settings.local_arctic_uri()),
            tradai_env=env.get(EnvVar.TRADAI_ENV, "local"),
            tradai_home=Path(env.get(EnvVar.TRADAI_HOME, tradai_settings.tradai_home())).resolve(),
            stack=env.get(EnvVar.TRADAI_STACK),
            aws_region=env.get(EnvVar.AWS_REGION),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL"),
            ecs_cluster=env.get(EnvVar.ECS_CLUSTER),
            heartbeat_max_age_seconds=number("TRADAI_API_HEARTBEAT_MAX_AGE_SECONDS", 180.0),
        )
