"""Local servers that tests start themselves on 127.0.0.1 and stop by process id, and waiting on what
such servers and processes do."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    """The first true value of ``condition``, asked every ``every`` seconds; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(every)
    return value


def wait_http(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class MotoServer:
    access_key = "testing"
    secret_key = "testing"
    region = "us-east-1"

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def client(self, service: str):
        import boto3

        return boto3.client(
            service, endpoint_url=self.url, region_name=self.region,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )

    def arctic_uri(self, bucket: str) -> str:
        # ArcticDB wants the port as a query parameter; host:port fails after long retries.
        return f"s3://127.0.0.1:{bucket}?port={self.port}&access={self.access_key}&secret={self.secret_key}"


@contextmanager
def moto_credentials(server: MotoServer) -> Iterator[MotoServer]:
    """The moto server's credentials in the environment (and no profile, session or endpoint of the
    developer's) while the block runs."""
    import pytest  # here, not at the top: benchmark scripts start servers from this module too

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        patch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        yield server


@contextmanager
def moto_server(env: dict[str, str] | None = None) -> Iterator[MotoServer]:
    """A moto server on a free port; ``env`` adds moto's own settings (e.g. MOTO_ECS_SERVICE_FAILED_TASKS)."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/moto-api/", process, timeout=60)
        yield MotoServer(port)
    finally:
        stop(process)


class MlflowServer:
    def __init__(self, root: Path, port: int, process: subprocess.Popen):
        self.root, self.process = root, process
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 120) -> None:
        try:
            wait_http(f"{self.url}/health", self.process, timeout=timeout)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}; server log:\n{(self.root / 'mlflow-server.log').read_text()[-3000:]}") from exc


@contextmanager
def mlflow_server(root: Path) -> Iterator[MlflowServer]:
    """A real ``mlflow server`` on SQLite in ``root``, serving artifacts itself (as in AWS).

    It takes 15-30 s to answer: callers do other work before ``wait_ready()``."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = (root / "mlflow-server.log").open("w")
    process = subprocess.Popen(
        [
            str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield MlflowServer(root, port, process)
    finally:
        stop(process)
        log.close()
