"""deploy/ensure_database.py against the machine's PostgreSQL (127.0.0.1:5432, user postgres)."""

from __future__ import annotations

import subprocess
import sys
import uuid

import psycopg2
import pytest

from deploy.ensure_database import ensure_database
from resources.aws_contract import EnvVar

SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"


@pytest.fixture
def database_name():
    name = f"tradai_ensure_{uuid.uuid4().hex[:10]}"
    yield name
    connection = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


def _exists(name: str) -> bool:
    connection = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            return cursor.fetchone() is not None
    finally:
        connection.close()


def test_creates_the_database_once(database_name):
    url = f"{SERVER}/{database_name}?sslmode=disable"
    assert not _exists(database_name)
    assert ensure_database(url) is True
    assert _exists(database_name)
    assert ensure_database(url) is False


def test_the_mlflow_service_command_reads_the_backend_store_variable(database_name):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        EnvVar.MLFLOW_BACKEND_STORE_URI: f"{SERVER}/{database_name}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "deploy.ensure_database"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database {database_name} created"
    assert _exists(database_name)


def test_the_code_location_command_creates_the_sweeps_database_from_its_variable(database_name):
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        EnvVar.SWEEP_STORAGE_URL: f"{SERVER}/{database_name}",
    }
    command = [sys.executable, "-m", "deploy.ensure_database", "--env", EnvVar.SWEEP_STORAGE_URL]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database {database_name} created"
    unset = subprocess.run(
        command, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60, check=False
    )
    assert unset.returncode == 2 and f"{EnvVar.SWEEP_STORAGE_URL} is not set" in unset.stderr


def test_refuses_a_url_without_a_database():
    with pytest.raises(ValueError, match="names no database"):
        ensure_database(f"{SERVER}/")
