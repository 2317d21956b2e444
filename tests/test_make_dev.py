"""`make dev` as a new user runs it: from a fresh copy of the working tree (uv's cache warm, a new
.venv), in a terminal, on free ports. Every service answers its health endpoint, a backtest runs
through the API and its MLflow link answers, and one Ctrl-C stops every process with exit status 0."""

import contextlib
import fcntl
import os
import pty
import re
import shutil
import subprocess
import termios
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.servers import free_port
from tradai_client.client import TradaiClient

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(900)
CRASH_LINES = ("Segmentation fault", "Traceback", "make: ***", "Killed after")


def fresh_copy(destination: Path) -> None:
    """The files a clone of the working tree would hold, as they are now (committed or not)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a file deleted in the working tree stays deleted
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def clean_environment(**extra: str) -> dict[str, str]:
    """The test process's environment without the product's settings, and uv on the PATH."""
    uv = shutil.which("uv") or str(REPO / ".tradai" / "tools" / "bin" / "uv")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRADAI_", "DAGSTER_", "MLFLOW_", "ARCTICDB_", "VIRTUAL_ENV", "MAKE"))}
    env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


class Terminal:
    """A command in a pseudo-terminal of its own, as its foreground job: what the terminal shows is
    collected, and ``ctrl_c`` types Ctrl-C into it."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]):
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True, preexec_fn=self._controlling_terminal)
        os.close(slave)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @staticmethod
    def _controlling_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every process holding the terminal has gone
                return
            if not chunk:
                return
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace").replace("\r\n", "\n")

    def wait_for(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode} before {marker!r}:\n{self.text[-5000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} within {timeout:.0f} s:\n{self.text[-5000:]}")
            time.sleep(0.5)
        return self.text

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self.reader.join(timeout=5)
        os.close(self.master)


def processes_of(home: Path) -> list[psutil.Process]:
    """Live processes whose environment names this TRADAI_HOME (every service, loader and bot has it)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and process.environ().get("TRADAI_HOME") == str(home):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_make_dev_on_a_fresh_clone_serves_everything_runs_a_backtest_and_stops_on_one_ctrl_c(tmp_path):
    clone = tmp_path / "clone"
    fresh_copy(clone)
    ports = {name: free_port() for name in ("TRADAI_DAGSTER_PORT", "TRADAI_MLFLOW_PORT", "TRADAI_API_PORT", "TRADAI_LOCAL_EXCHANGE_PORT")}
    env = clean_environment(**{k: str(v) for k, v in ports.items()}, TRADAI_CONFIG=str(tmp_path / "no-config.toml"))
    home = clone / ".tradai"
    terminal = Terminal(["make", "dev"], clone, env)
    try:
        shown = terminal.wait_for("Ctrl-C stops everything.", timeout=720)
        assert "still starting after" in shown and "ready after" in shown
        for port in ports.values():
            assert f"http://127.0.0.1:{port}" in shown
        assert "/api/v1/health answers (ok)" in shown
        token = re.search(r"export TRADAI_API_TOKEN=(\S+)", shown).group(1)

        dagster, mlflow, api = (f"http://127.0.0.1:{ports[k]}" for k in ("TRADAI_DAGSTER_PORT", "TRADAI_MLFLOW_PORT", "TRADAI_API_PORT"))
        assert httpx.get(f"{dagster}/server_info", timeout=10).status_code == 200
        assert httpx.get(f"{mlflow}/health", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{ports['TRADAI_LOCAL_EXCHANGE_PORT']}/api/v3/ping", timeout=10).json() == {}
        with TradaiClient(api, token) as client:
            assert client.health()["status"] == "ok"
            job = client.submit_backtest("SampleStrategy", timerange="20180120-20180123", pairs=["ETH/BTC", "LTC/BTC"])
            finished = client.wait(job["job_id"], timeout=480)
        assert finished["status"] == "SUCCEEDED", finished
        link = finished["mlflow"]["url"]
        assert link.startswith(f"{mlflow}/#/experiments/"), link
        assert httpx.get(link, timeout=10).status_code == 200
        recorded = httpx.get(f"{mlflow}/api/2.0/mlflow/runs/get", params={"run_id": finished["mlflow"]["run_id"]}, timeout=10)
        assert recorded.status_code == 200 and recorded.json()["run"]["data"]["metrics"]

        running = processes_of(home)
        assert len(running) >= 7, running  # make, the supervisor and every service
        terminal.ctrl_c()
        pressed = time.monotonic()
        status = terminal.process.wait(timeout=30)
        stopped_after = time.monotonic() - pressed
        terminal.reader.join(timeout=5)
    finally:
        terminal.close()
        # Services run in sessions of their own: whatever outlived make is recorded, then killed, so a
        # failing run leaves nothing behind on the machine.
        left = processes_of(home)
        for process in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
    shown = terminal.text
    assert status == 0, shown[-5000:]
    assert stopped_after < 10, f"stopped after {stopped_after:.1f} s"
    assert not [line for line in shown.splitlines() if any(crash in line for crash in CRASH_LINES)], shown[-5000:]
    assert "Stopped in" in shown
    assert left == []
    assert not [p for p in running if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    print(f"make dev stopped {stopped_after:.1f} s after Ctrl-C")
