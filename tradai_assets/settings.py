"""Where things live: one place that reads the environment for paths and the deployment flavour.

``TRADAI_ENV`` picks the resource set (``local`` by default, or ``aws``). Local state lives under
``TRADAI_HOME`` (default ``.tradai/`` in the repository): Dagster's home, ArcticDB on LMDB, MLflow on
SQLite with local artifacts.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("local", "aws")


def tradai_env() -> str:
    env = os.environ.get("TRADAI_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ValueError(f"TRADAI_ENV={env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return env


def tradai_home() -> Path:
    return Path(os.environ.get("TRADAI_HOME", REPO_ROOT / ".tradai")).resolve()


def local_arctic_uri() -> str:
    return os.environ.get("ARCTICDB_URI", f"lmdb://{tradai_home() / 'arctic'}")


def local_mlflow_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{tradai_home() / 'mlflow.db'}")


def local_mlflow_ui_url() -> str:
    """Where links to MLflow runs point; ``make dev`` sets it to the MLflow UI it starts."""
    return os.environ.get("MLFLOW_UI_URL", "http://127.0.0.1:5000")


def universe_path() -> Path:
    return Path(os.environ.get("TRADAI_UNIVERSE", Path(__file__).parent / "universe.yaml")).resolve()
