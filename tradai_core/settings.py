"""Where things live and how often the model lifecycle looks: the environment, read with pydantic-settings.

``TRADAI_ENV`` picks the resource set (``local`` by default, or ``aws``). Local state lives under
``TRADAI_HOME`` (default ``.tradai/`` in the repository): Dagster's home, ArcticDB on LMDB, MLflow on
SQLite with local artifacts. The settings are read afresh on every call, so a changed environment
(a test, a reloaded code location) is seen. A bad value raises ``SettingsError`` naming the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# The code location keeps the files quants edit: the universe and the base backtest config.
CODE_LOCATION_DIR = REPO_ROOT / "tradai_assets"
ENVIRONMENTS = ("local", "aws")


class SettingsError(ValueError):
    """A missing or invalid setting; the message names the environment variable and its value."""


class EnvironmentSettings(BaseSettings):
    """Settings read from environment variables named by each field's alias, case as written."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", env_ignore_empty=True,
                                      populate_by_name=True)


Settings = TypeVar("Settings", bound=EnvironmentSettings)


def read(settings: type[Settings], environ: dict[str, str] | None = None, **overrides) -> Settings:
    """``settings`` from the process environment (or ``environ``), every bad variable named in one
    ``SettingsError``: ``TRADAI_ENV='staging': Input should be 'local' or 'aws'``."""
    try:
        if environ is None:
            return settings(**overrides)
        # Only ``environ``: the process environment is not consulted.
        return settings.model_validate({**_from_mapping(settings, environ), **overrides})
    except ValidationError as exc:
        raise settings_error(settings, exc) from exc


def settings_error(settings: type[EnvironmentSettings], exc: ValidationError) -> SettingsError:
    """One ``SettingsError`` naming every bad variable of ``exc`` (by variable, also for a value given
    by field name)."""
    variables = {name: info.validation_alias or name for name, info in settings.model_fields.items()}
    return SettingsError("; ".join(_describe(error, variables) for error in exc.errors()))


def _from_mapping(settings: type[EnvironmentSettings], environ: dict[str, str]) -> dict[str, str]:
    """The values of ``settings``' variables found in ``environ``, by variable (an empty value is unset)."""
    variables = [info.validation_alias or name for name, info in settings.model_fields.items()]
    return {v: environ[v] for v in variables if environ.get(v) not in (None, "")}


def _describe(error, variables: dict[str, str]) -> str:
    variable = variables.get(error["loc"][0], error["loc"][0]) if error["loc"] else "settings"
    message = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
    if error["type"] == "value_error" and (not error["loc"] or variable in message):
        return message  # the project's own check, whose message names the variables
    value = error.get("input")
    shown = f"{variable}={value!r}" if isinstance(value, str) else str(variable)
    return f"{shown}: {message}"


class LocationSettings(EnvironmentSettings):
    tradai_env: Literal["local", "aws"] = Field("local", validation_alias="TRADAI_ENV")
    tradai_home: Path = Field(REPO_ROOT / ".tradai", validation_alias="TRADAI_HOME")
    arctic_uri: str | None = Field(None, validation_alias="ARCTICDB_URI")
    """Locally: ``lmdb://<home>/arctic`` when unset."""
    mlflow_tracking_uri: str | None = Field(None, validation_alias="MLFLOW_TRACKING_URI")
    """Locally: ``sqlite:///<home>/mlflow.db`` when unset."""
    mlflow_ui_url: str = Field("http://127.0.0.1:5000", validation_alias="MLFLOW_UI_URL")
    """Where links to MLflow runs point; ``make dev`` sets it to the MLflow UI it starts."""
    universe: Path = Field(CODE_LOCATION_DIR / "universe.yaml", validation_alias="TRADAI_UNIVERSE")
    sweep_storage_url: str | None = Field(None, validation_alias="TRADAI_SWEEP_STORAGE_URL")
    """Optuna's database for TPE and NSGA-II sweeps. Locally: ``sqlite:///<home>/sweeps.db`` when unset;
    on AWS the stack's PostgreSQL (required there)."""


class LifecycleSettings(EnvironmentSettings):
    """How often the model lifecycle's schedule and sensors look, in seconds."""

    drift_interval_seconds: int = Field(6 * 3600, ge=1, validation_alias="TRADAI_DRIFT_INTERVAL_SECONDS")
    """The drift check of every champion runs this often (a cron: see ``tradai_assets.model_drift``)."""
    challenger_interval_seconds: int = Field(300, ge=1, validation_alias="TRADAI_CHALLENGER_INTERVAL_SECONDS")


PAUSE_OFF = "off"


class StaleDataSettings(EnvironmentSettings):
    """When the platform pauses a bot's entries because its candles stopped arriving (sensors.stale_data)."""

    pause_after: str = Field("2h", validation_alias="TRADAI_STALE_CANDLES_PAUSE_AFTER")
    """A bot is paused when the newest stored candle of one of its pairs closed longer ago than this
    (``<count><s|m|h|d|w>``), or never (``off``). The hourly syncs leave the newest candle up to about
    70 minutes old."""

    @field_validator("pause_after")
    @classmethod
    def _a_duration(cls, value: str) -> str:
        from tradai_core.candles import timeframe_delta

        if value == PAUSE_OFF:
            return value
        timeframe_delta(value)  # a positive count of one unit, or a ValueError naming the value
        return value


def location_settings() -> LocationSettings:
    return read(LocationSettings)


def lifecycle_settings() -> LifecycleSettings:
    return read(LifecycleSettings)


def stale_data_settings() -> StaleDataSettings:
    return read(StaleDataSettings)


def tradai_env() -> str:
    return location_settings().tradai_env


def tradai_home() -> Path:
    return location_settings().tradai_home.resolve()


def local_arctic_uri() -> str:
    return location_settings().arctic_uri or f"lmdb://{tradai_home() / 'arctic'}"


def local_mlflow_uri() -> str:
    return location_settings().mlflow_tracking_uri or f"sqlite:///{tradai_home() / 'mlflow.db'}"


def local_sweep_storage_url() -> str:
    return location_settings().sweep_storage_url or f"sqlite:///{tradai_home() / 'sweeps.db'}"


def local_mlflow_ui_url() -> str:
    return location_settings().mlflow_ui_url


def universe_path() -> Path:
    return location_settings().universe.resolve()
