import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import botocore.endpoint
import dagster as dg
import pytest

from resources.arctic import ArcticStore
from resources.backtest_store import BacktestStore
from tests.api_support import dagster_webserver
from tests.deployment_support import arctic_at, ecs_services, new_bucket, new_cluster, vpc_network, write_deployments
from tests.market_data_support import INSTANCE_OVERRIDES
from tests.servers import moto_credentials, moto_server
from tradai_assets.deployments import DEPLOYMENTS_ENV

pytest_plugins = ["tests.fakes.fixtures"]

# Fixtures that start a server on 127.0.0.1 (a process, or a thread listening on a port): every test
# that uses one, directly or through other fixtures, is marked ``integration``. A test that starts a
# server itself carries the mark in its module. ``identity_provider``: test_api_auth's JWKS server.
SERVER_FIXTURES = {"moto", "fake_binance", "graphql_url", "identity_provider"}
HEALTH_THREADS = "tradai-health"  # the names of the API health probe's check threads (tradai_api.routes.health)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def isolated_homes(tmp_path_factory: pytest.TempPathFactory):
    """The suite never reads or writes a developer's .tradai (make exports its paths to every target):
    every home the product resolves from the environment points into a temporary directory."""
    root = tmp_path_factory.mktemp("homes")
    (root / "dagster").mkdir()
    # A developer's shell (or make dev) may point bots at a running local exchange; tests start their own.
    # The runner's terminal size (a pytest-xdist worker exports COLUMNS=80) must not wrap the log lines
    # of the programs the tests start and read.
    unset = ("ARCTICDB_URI", "TRADAI_LOCAL_EXCHANGE_URL", "MLFLOW_REGISTRY_URI", "MLFLOW_UI_URL", "COLUMNS", "LINES")
    saved = {k: os.environ.get(k) for k in ("TRADAI_HOME", "DAGSTER_HOME", "MLFLOW_TRACKING_URI", *unset)}
    os.environ.update(
        TRADAI_HOME=str(root), DAGSTER_HOME=str(root / "dagster"), MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}"
    )
    for key in unset:
        os.environ.pop(key, None)
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def health_probes_finish():
    """The API's health probe answers after its deadline and leaves slow checks running in their threads.
    On a loaded machine MLflow's check may still be creating its SQLite tables (alembic, which keeps its
    state in module globals) when the next test opens a Dagster instance (alembic too): wait for them."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith(HEALTH_THREADS):
            thread.join(timeout=120)


@pytest.fixture
def tradai_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "tradai"
    monkeypatch.setenv("TRADAI_HOME", str(home))
    monkeypatch.delenv("ARCTICDB_URI", raising=False)
    monkeypatch.delenv("TRADAI_UNIVERSE", raising=False)
    monkeypatch.setenv("TRADAI_ENV", "local")
    return home


@pytest.fixture
def arctic(tmp_path: Path) -> ArcticStore:
    return ArcticStore(uri=f"lmdb://{tmp_path / 'arctic'}")


@pytest.fixture
def instance():
    with dg.instance_for_test(overrides=INSTANCE_OVERRIDES) as inst:
        yield inst


@pytest.fixture(scope="module")
def module_instance():
    """One instance for the whole module: for modules that load a location's data once and share it."""
    with dg.instance_for_test(overrides=INSTANCE_OVERRIDES) as inst:
        yield inst


@pytest.fixture
def memory_instance():
    """An in-memory instance: the same storage code as SQLite on disk, without a sync per event."""
    with dg.DagsterInstance.ephemeral() as inst:
        yield inst


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory) -> str:
    # One SQLite store per module: building MLflow's tables takes seconds, a model version milliseconds.
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


class FakeClock:
    """A UTC clock that moves only when the test moves it, starting at the real time (the Dagster
    instance stamps runs and materialisations with the real clock)."""

    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        return self.current

    def time(self) -> float:
        return self.current.timestamp()

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    """For product code that takes a clock: a limit expires when the test says so, not after a sleep."""
    return FakeClock()


@pytest.fixture(scope="session")
def moto():
    """A moto server on 127.0.0.1 for the whole session (S3, ECS, DynamoDB, Secrets Manager)."""
    with moto_server() as server:
        yield server


@pytest.fixture
def aws_env(moto):
    """The session's moto server, its credentials in the environment for the test."""
    with moto_credentials(moto) as server:
        yield server


@pytest.fixture
def network(aws_env) -> dict[str, list[str]]:
    """Subnet and security group of a new VPC on the moto server, where bot tasks run."""
    return vpc_network(aws_env)


# Deployments and the bot sensors ------------------------------------------------------------------


@pytest.fixture
def backtest_store(tmp_path: Path) -> BacktestStore:
    return BacktestStore(arctic=arctic_at(tmp_path))


@pytest.fixture
def deployments_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty deployments.yaml that the deployment assets read; live trading not allowed."""
    path = write_deployments(tmp_path / "deployments.yaml", {})
    monkeypatch.setenv(DEPLOYMENTS_ENV, str(path))
    monkeypatch.delenv("TRADAI_ALLOW_LIVE", raising=False)
    return path


@pytest.fixture
def ecs(aws_env, network):
    """ECS bot services on a new cluster of the moto server, their configs in a new bucket."""
    return ecs_services(aws_env, new_cluster(aws_env), network, new_bucket(aws_env))


# The API ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> Path:
    """Where the API's stores (ArcticDB, MLflow) live, one directory per module."""
    return tmp_path_factory.mktemp("api-stores")


@pytest.fixture(scope="module")
def graphql_url(tmp_path_factory):
    """A Dagster webserver over the API tests' small code location (runs stay queued): its GraphQL URL."""
    with dagster_webserver(tmp_path_factory.mktemp("dagster-webserver")) as url:
        yield url


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff waits botocore's retries asked for (recorded instead of slept)."""
    waits: list[float] = []
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=waits.append, time=time.time))
    return waits
