"""The API's settings, read from the environment once at start-up with pydantic-settings.

Names shared with the AWS deployment come from ``resources.aws_contract`` (plain Python, cheap to
import); the others are the API's own and are documented in docs/api.md. ``ApiSettings(...)`` takes
values by field name and reads no environment; ``ApiSettings.from_environment()`` reads the
variables, and every bad one is named in one ``SettingsError``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from resources.aws_contract import EnvVar
from tradai_core import settings as tradai_settings
from tradai_core.settings import EnvironmentSettings

AUTH_MODES = ("hs256", "jwks")
# HMAC keys shorter than the hash output are brute-forceable offline from any issued token.
MIN_SECRET_BYTES = 32
DEFAULT_GRAPHQL_URL = "http://127.0.0.1:3000/graphql"
# hs256 tokens name the API as their audience unless TRADAI_API_JWT_AUDIENCE says otherwise, so a
# token minted with the same secret for another service is not accepted here.
DEFAULT_AUDIENCE = "tradai-api"


SettingsError = tradai_settings.SettingsError


@dataclass(frozen=True)
class RateLimit:
    """``requests`` per ``seconds``, as a token bucket: bursts up to ``requests``, refilled evenly."""

    requests: int
    seconds: float

    @classmethod
    def parse(cls, text: str, variable: str) -> RateLimit:
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


def _rate_limit(variable: str):
    def parse(value: Any) -> RateLimit:
        return value if isinstance(value, RateLimit) else RateLimit.parse(str(value), variable)

    return Annotated[RateLimit, BeforeValidator(parse), PlainSerializer(str)]


class ApiSettings(EnvironmentSettings):
    # Only the values given: the environment is read by ``from_environment``, never behind a caller's back.
    model_config = SettingsConfigDict(frozen=True, arbitrary_types_allowed=True)

    auth_mode: Literal["hs256", "jwks"] = Field("hs256", validation_alias=EnvVar.API_AUTH)
    jwt_secret: str | None = Field(None, validation_alias=EnvVar.API_JWT_SECRET)
    jwt_algorithm: str = Field("HS256", validation_alias=EnvVar.API_JWT_ALGORITHM)
    jwks_url: str | None = Field(None, validation_alias=EnvVar.API_JWKS_URL)
    jwt_issuer: str | None = Field(None, validation_alias=EnvVar.API_JWT_ISSUER)
    jwt_audience: str | None = Field(None, validation_alias=EnvVar.API_JWT_AUDIENCE)
    """The ``aud`` (or ``client_id``) every token must carry: ``DEFAULT_AUDIENCE`` in hs256 mode when
    None; required in jwks mode (the identity provider's app client id)."""
    scope_prefix: str = Field("", validation_alias=EnvVar.API_SCOPE_PREFIX)
    """Cognito resource-server scopes arrive as ``<identifier>/backtests:read``: the identifier to strip."""
    jwks_min_refetch_seconds: float = Field(30.0, ge=0, validation_alias="TRADAI_API_JWKS_MIN_REFETCH_SECONDS")
    """A token with an unknown key id refetches the key set at most this often (a flood of made-up
    key ids must not turn into a flood of requests to the identity provider)."""
    rate_limit: _rate_limit("TRADAI_API_RATE_LIMIT") = Field(
        RateLimit(100, 300), validation_alias="TRADAI_API_RATE_LIMIT"
    )
    backtest_rate_limit: _rate_limit("TRADAI_API_BACKTEST_RATE_LIMIT") = Field(
        RateLimit(10, 1), validation_alias="TRADAI_API_BACKTEST_RATE_LIMIT"
    )
    max_body_bytes: int = Field(64 * 1024, ge=1, validation_alias="TRADAI_API_MAX_BODY_BYTES")
    dagster_graphql_url: str = Field(DEFAULT_GRAPHQL_URL, validation_alias=EnvVar.DAGSTER_GRAPHQL_URL)
    dagster_timeout_seconds: float = Field(15.0, gt=0, validation_alias="TRADAI_API_DAGSTER_TIMEOUT_SECONDS")
    mlflow_tracking_uri: str = Field(default_factory=tradai_settings.local_mlflow_uri,
                                     validation_alias=EnvVar.MLFLOW_TRACKING_URI)
    arctic_uri: str = Field(default_factory=tradai_settings.local_arctic_uri, validation_alias=EnvVar.ARCTICDB_URI)
    strategies_dir: Path = Field(default_factory=strategies_dir, validation_alias="TRADAI_STRATEGIES")
    universe_path: Path = Field(default_factory=tradai_settings.universe_path, validation_alias="TRADAI_UNIVERSE")
    warm_up: bool = Field(True, validation_alias="TRADAI_API_WARM_UP")
    """Import the storage libraries in the background at start-up so the first request is not slow."""
    tradai_env: Literal["local", "aws"] = Field("local", validation_alias=EnvVar.TRADAI_ENV)
    """Which backends hold the bots and their heartbeats: local processes and SQLite, or ECS and DynamoDB."""
    tradai_home: Path = Field(default_factory=tradai_settings.tradai_home, validation_alias=EnvVar.TRADAI_HOME)
    """Locally: the bots' directories and heartbeat database live under ``<home>/bots``."""
    stack: str | None = Field(None, validation_alias=EnvVar.TRADAI_STACK)
    """On AWS: dev, staging or prod (names the ECS cluster and the trading-state table)."""
    aws_region: str | None = Field(None, validation_alias=EnvVar.AWS_REGION)
    aws_endpoint_url: str | None = Field(None, validation_alias="AWS_ENDPOINT_URL")
    ecs_cluster: str | None = Field(None, validation_alias=EnvVar.ECS_CLUSTER)
    """On AWS: the bots' cluster; the stack's cluster when None."""
    heartbeat_max_age_seconds: float = Field(180.0, gt=0, validation_alias="TRADAI_API_HEARTBEAT_MAX_AGE_SECONDS")
    """A bot whose last heartbeat is older than this is unhealthy."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise tradai_settings.settings_error(type(self), exc) from exc

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings,)

    @model_validator(mode="after")
    def _consistent(self) -> ApiSettings:
        if self.auth_mode == "hs256":
            if not self.jwt_secret:
                raise ValueError(f"{EnvVar.API_AUTH}=hs256 needs {EnvVar.API_JWT_SECRET}")
            if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"{EnvVar.API_JWT_SECRET} must be at least {MIN_SECRET_BYTES} bytes long")
            if self.jwt_algorithm not in ("HS256", "HS384", "HS512"):
                raise ValueError(
                    f"{EnvVar.API_JWT_ALGORITHM}={self.jwt_algorithm!r}: hs256 mode signs with HS256, HS384 or HS512"
                )
            if self.jwt_audience == "":
                raise ValueError(f"{EnvVar.API_JWT_AUDIENCE} must not be empty (unset, it is {DEFAULT_AUDIENCE})")
        else:
            missing = [
                name for name, value in (
                    (EnvVar.API_JWKS_URL, self.jwks_url),
                    (EnvVar.API_JWT_ISSUER, self.jwt_issuer),
                    (EnvVar.API_JWT_AUDIENCE, self.jwt_audience),
                ) if not value
            ]
            if missing:
                raise ValueError(f"{EnvVar.API_AUTH}=jwks needs {', '.join(missing)}")
        if self.tradai_env == "aws" and not self.stack:
            raise ValueError(f"{EnvVar.TRADAI_ENV}=aws needs {EnvVar.TRADAI_STACK}")
        return self

    @field_validator("tradai_home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        return home.resolve()

    @property
    def audience(self) -> str:
        return self.jwt_audience or DEFAULT_AUDIENCE

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> ApiSettings:
        """The settings from ``environ`` (the process environment when None); unset variables keep defaults."""
        return tradai_settings.read(cls, dict(os.environ) if environ is None else environ)
