"""What the API tests share: settings, tokens, RSA keys, a JWKS server on 127.0.0.1, and a whole local
stack (a loaded TRADAI_HOME, ``dagster dev`` and the API under uvicorn) started as processes."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers import BIN, free_port, stop, wait_http
from tradai_api.auth import ALL_SCOPES, mint_token
from tradai_api.settings import ApiSettings
from tradai_client.client import ApiError

REPO = Path(__file__).resolve().parent.parent
SECRET = "test-secret-0123456789abcdef0123456789"
UNREACHABLE_GRAPHQL = "http://127.0.0.1:9/graphql"  # the discard port: nothing answers


def hs256_settings(root: Path, **overrides) -> ApiSettings:
    """Settings whose stores live under ``root`` and whose Dagster does not answer (unless
    ``dagster_graphql_url`` names a running one, which then gets a timeout for a loaded machine)."""
    timeout = 30.0 if overrides.get("dagster_graphql_url", UNREACHABLE_GRAPHQL) != UNREACHABLE_GRAPHQL else 2.0
    values = {"auth_mode": "hs256", "jwt_secret": SECRET, "dagster_graphql_url": UNREACHABLE_GRAPHQL,
              "strategies_dir": REPO / "strategies", "warm_up": False, "dagster_timeout_seconds": timeout,
              "mlflow_tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "arctic_uri": f"lmdb://{root / 'arctic'}"}
    return ApiSettings(**{**values, **overrides})


def hs256_token(scopes=ALL_SCOPES, subject: str = "tester", ttl: float = 600, secret: str = SECRET, **kwargs) -> str:
    return mint_token(secret, subject, list(scopes), ttl, **kwargs)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class RsaKey:
    kid: str
    private: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, str]:
        numbers = self.private.public_key().public_numbers()
        return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": _b64(numbers.n), "e": _b64(numbers.e)}

    def token(self, claims: dict, kid: str | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": kid or self.kid})


class JwksServer:
    """Serves ``keys`` as a JWKS on 127.0.0.1 from a thread (or ``body`` as it is); counts the fetches."""

    def __init__(self, keys: list[RsaKey], body: bytes | None = None):
        self.keys = keys
        self.body = body
        self.fetches = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                server.fetches += 1
                body = json.dumps({"keys": [k.jwk() for k in server.keys]}).encode() if server.body is None else server.body
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep pytest's output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "JwksServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# The whole stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    home: Path
    strategies: Path
    graphql_url: str
    api_url: str
    env: dict[str, str]
    token: str

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "tradai"), *args], env=self.env, capture_output=True, text=True, timeout=timeout)


def _start(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:
        # A session of its own: the process group then holds this server and its children only.
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop_dagster_dev(process: subprocess.Popen) -> None:
    """SIGTERM lets dagster dev stop its webserver, daemon and code servers (it waits for each); if
    it has not finished within a minute, its process group (started by ``_start``) is killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived their parent, if any
    except ProcessLookupError:
        pass  # the group is empty: everything stopped cleanly


@contextmanager
def local_stack(root: Path, strategy_files: list[str]) -> Iterator[Stack]:
    """A fresh TRADAI_HOME with the sample loaded, ``dagster dev`` (webserver and daemon) and the API,
    all on free ports of 127.0.0.1. Strategies come from a directory of copies, so tests may add files."""
    home, strategies = root / "tradai", root / "strategies"
    strategies.mkdir(parents=True)
    for name in strategy_files:
        shutil.copyfile(REPO / "strategies" / name, strategies / name)
    dagster_port, api_port = free_port(), free_port()
    graphql_url = f"http://127.0.0.1:{dagster_port}/graphql"
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("TRADAI_", "DAGSTER_", "MLFLOW_", "ARCTICDB_"))
    }
    env.update({
        "TRADAI_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "TRADAI_ENV": "local",
        "TRADAI_STRATEGIES": str(strategies), "TRADAI_API_JWT_SECRET": SECRET,
        "TRADAI_DAGSTER_GRAPHQL_URL": graphql_url, "TRADAI_API_URL": f"http://127.0.0.1:{api_port}",
        "TRADAI_CONFIG": str(root / "no-config.toml"),
    })
    bootstrap = subprocess.run([sys.executable, "-m", "tradai_dev.bootstrap"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=300)
    assert bootstrap.returncode == 0, bootstrap.stderr[-3000:]
    # As `make dev` does: start outside the repository so Dagster reads only DAGSTER_HOME's dagster.yaml.
    dagster = _start([str(BIN / "dagster"), "dev", "--host", "127.0.0.1", "--port", str(dagster_port),
                      "--workspace", str(REPO / "workspace.yaml")], home / "dagster", env, root / "dagster.log")
    api = _start([str(BIN / "uvicorn"), "--factory", "tradai_api.app:create_app_from_environment",
                  "--host", "127.0.0.1", "--port", str(api_port)], REPO, env, root / "api.log")
    try:
        wait_http(f"http://127.0.0.1:{api_port}/api/v1/health", api, timeout=60)
        wait_graphql_location(graphql_url, dagster, timeout=120)
        token = hs256_token(subject="stack-tester")
        yield Stack(home, strategies, graphql_url, f"http://127.0.0.1:{api_port}", {**env, "TRADAI_API_TOKEN": token}, token)
    finally:
        stop(api)
        stop_dagster_dev(dagster)


def wait_graphql_location(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Until the webserver answers and the code location has loaded."""
    import httpx

    query = "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename } } } } }"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}")
        try:
            entries = httpx.post(url, json={"query": query}, timeout=5).json()["data"]["workspaceOrError"]["locationEntries"]
            if entries and all((e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation" for e in entries):
                return
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            pass  # not up yet
        time.sleep(0.5)
    raise TimeoutError(f"{url} had no loaded code location within {timeout}s")


# An API in a thread, and a Dagster webserver over a small code location -----------------------------


@contextmanager
def serve_api(app, timeout: float = 20) -> Iterator[str]:
    """The app under uvicorn on a free port of 127.0.0.1, in a thread of the test process; yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="tradai-test-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the API did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def dagster_webserver(root: Path, module: str = "tests.api_location.definitions") -> Iterator[str]:
    """``dagster-webserver`` over ``module`` with a queued run coordinator and no daemon: runs the API
    launches are validated and stored, and stay QUEUED. Yields the GraphQL URL."""
    home = root / "dagster-home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "telemetry:\n  enabled: false\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env["DAGSTER_HOME"] = str(home)
    process = _start([str(BIN / "dagster-webserver"), "-m", module, "-h", "127.0.0.1", "-p", str(port)],
                     REPO, env, root / "dagster-webserver.log")
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        wait_graphql_location(url, process, timeout=90)
        yield url
    finally:
        stop(process)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the code server it started, if still there
        except ProcessLookupError:
            pass


def queued_run(graphql_url: str, run_id: str) -> dict:
    """A run as the webserver stores it: job, status, run config, tags and asset selection."""
    import httpx

    query = """query Run($id: ID!) { runOrError(runId: $id) { ... on Run { jobName status runConfigYaml
               tags { key value } assetSelection { path } } } }"""
    run = httpx.post(graphql_url, json={"query": query, "variables": {"id": run_id}}, timeout=10).json()["data"]["runOrError"]
    import yaml

    return {**run, "runConfig": yaml.safe_load(run["runConfigYaml"]) or {}, "tags": {t["key"]: t["value"] for t in run["tags"]}}


def status_of(call, *args, **kwargs) -> int:
    """The HTTP status with which the API refused a call of the Python client."""
    with pytest.raises(ApiError) as refused:
        call(*args, **kwargs)
    return refused.value.status
