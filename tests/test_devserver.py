"""The `make dev` supervisor's parts that need no running product: bad settings, a service that
cannot start, and stopping local bots."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.servers import free_port
from tests.test_make_dev import processes_of
from tradai_core.state_files import read_json, supervisor_pid
from tradai_dev.devserver import stop_local_bots

REPO = Path(__file__).resolve().parent.parent


def devserver(home: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TRADAI_", "DAGSTER_", "MLFLOW_", "ARCTICDB_"))}
    clean.update(TRADAI_HOME=str(home), TRADAI_API_JWT_SECRET="test-secret-0123456789abcdef0123456789", **env)
    return subprocess.run([sys.executable, "-m", "tradai_dev.devserver"], cwd=REPO, env=clean,
                          capture_output=True, text=True, timeout=timeout)


def test_a_port_that_is_not_a_number_stops_it_before_anything_starts(tmp_path):
    home = tmp_path / "tradai"
    result = devserver(home, timeout=60, TRADAI_API_PORT="80a0")
    assert result.returncode != 0
    assert "TRADAI_API_PORT='80a0': expected a TCP port number" in result.stderr
    assert not home.exists()  # nothing prepared, nothing started


def test_a_service_that_cannot_start_stops_everything_with_its_error_shown(tmp_path):
    home = tmp_path / "tradai"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = {k: str(free_port()) for k in ("TRADAI_DAGSTER_PORT", "TRADAI_MLFLOW_PORT", "TRADAI_API_PORT")}
        result = devserver(home, TRADAI_LOCAL_EXCHANGE_PORT=str(busy), **ports)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "make dev stops: exchange simulator exited with status" in result.stdout
    assert "Address already in use" in result.stdout  # the end of its log, shown
    assert "TradAI is up" not in result.stdout
    assert "Stopped in" in result.stdout
    assert processes_of(home) == []
    # The stores' preparation was left to finish: both are whole and usable.
    from mlflow import MlflowClient

    assert [e.name for e in MlflowClient(f"sqlite:///{home / 'mlflow.db'}").search_experiments()] == ["Default"]
    assert (home / "dagster" / "history" / "runs.db").is_file(), result.stdout


def test_a_stop_waits_for_the_stores_preparation_and_a_second_one_forces_it(tmp_path):
    home = tmp_path / "tradai"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADAI_", "DAGSTER_", "MLFLOW_", "ARCTICDB_"))}
    env.update(TRADAI_HOME=str(home), TRADAI_API_JWT_SECRET="test-secret-0123456789abcdef0123456789",
               **{k: str(free_port()) for k in ("TRADAI_DAGSTER_PORT", "TRADAI_MLFLOW_PORT", "TRADAI_API_PORT", "TRADAI_LOCAL_EXCHANGE_PORT")})
    process = subprocess.Popen([sys.executable, "-m", "tradai_dev.devserver"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("Preparing the local stores"):
            process.send_signal(signal.SIGTERM)
        if line.startswith("Waiting for preparing the"):
            process.send_signal(signal.SIGTERM)
            break
    output = "".join(lines) + process.stdout.read()
    assert process.wait(timeout=30) == 1, output
    assert "Stopped by force." in output and "Traceback" not in output
    assert processes_of(home) == []


def test_stopping_local_bots_stops_each_supervisor_and_its_bot(tmp_path):
    bot_dir = tmp_path / "bots" / "sleeper"
    bot_dir.mkdir(parents=True)
    (bot_dir / "launch.json").write_text(json.dumps({
        "command": [sys.executable, "-c", "import time; time.sleep(120)"], "environment": {},
        "max_restarts": 0, "stable_seconds": 60, "restart_delay_seconds": 0, "stop_timeout_seconds": 5,
    }))
    supervisor = subprocess.Popen([sys.executable, "-m", "tradai_bot.supervisor", "supervise", str(bot_dir)],
                                  cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    (bot_dir / "supervisor.pid").write_text(str(supervisor.pid))
    deadline = time.monotonic() + 30
    while read_json(bot_dir / "status.json").get("state") != "running":
        assert time.monotonic() < deadline and supervisor.poll() is None
        time.sleep(0.1)
    bot = psutil.Process(read_json(bot_dir / "status.json")["bot_pid"])

    assert stop_local_bots(tmp_path, timeout=8) == []  # nothing had to be killed
    assert supervisor.wait(timeout=5) == 0
    assert not bot.is_running() or bot.status() == psutil.STATUS_ZOMBIE
    assert read_json(bot_dir / "status.json")["state"] == "stopped"
    assert supervisor_pid(bot_dir) is None
