"""How long `make dev` takes to bring each service up: a first start (empty TRADAI_HOME: stores
created, sample loaded) and a second one, against the shell recipe it replaced, in one run.

    python -m bench.dev_start [--rounds 1]

Each start runs on free ports of 127.0.0.1 with a fresh TRADAI_HOME under a temporary directory and
is stopped with SIGTERM once every service answers. Times count from the start of the command:

- ``devserver``: ``python -m tradai_dev.devserver``, its own "ready after" lines;
- ``shell recipe``: what `make dev` ran before (the bootstrap, then the exchange, ``mlflow server`` with
  its default workers and job runner, ``dagster dev`` and the API side by side), each service's
  health endpoint polled as the devserver polls it.
The load average before each start is recorded: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, report
from tradai_dev.devserver import api_probe, dagster_daemon_probe, dagster_ui_probe, free_port, http_probe

BIN = Path(sys.executable).parent
SECRET = "bench-secret-0123456789abcdef0123456789"
READY = re.compile(r"ready after\s+([\d.]+) s: ([^(\n]+?)(?: \(|$)")


def environment(home: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADAI_", "DAGSTER_", "MLFLOW_", "ARCTICDB_"))}
    env.update({k: str(v) for k, v in ports.items()})
    env.update(TRADAI_HOME=str(home), DAGSTER_HOME=str(home / "dagster"), TRADAI_API_JWT_SECRET=SECRET,
               MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}")
    return env


def new_ports() -> dict[str, int]:
    return {k: free_port() for k in ("TRADAI_DAGSTER_PORT", "TRADAI_MLFLOW_PORT", "TRADAI_API_PORT", "TRADAI_LOCAL_EXCHANGE_PORT")}


def devserver_start(home: Path) -> dict[str, float]:
    env = environment(home, new_ports())
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "tradai_dev.devserver"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ready: dict[str, float] = {}
    for line in process.stdout:
        if match := READY.search(line):
            ready[match.group(2).strip()] = float(match.group(1))
        if line.startswith("TradAI is up"):
            ready["all (banner printed)"] = time.monotonic() - started
        if line.startswith("Sample data:") or "Loading the sample FAILED" in line:
            ready["sample loaded"] = time.monotonic() - started
            break
        if line.startswith("make dev stops"):
            raise RuntimeError(line + process.stdout.read())
    os.kill(process.pid, signal.SIGTERM)
    process.communicate(timeout=60)
    return ready


def shell_recipe_start(home: Path) -> dict[str, float]:
    ports = new_ports()
    env = environment(home, ports)
    dagster_url = f"http://127.0.0.1:{ports['TRADAI_DAGSTER_PORT']}"
    env.update(TRADAI_DAGSTER_GRAPHQL_URL=f"{dagster_url}/graphql",
               TRADAI_LOCAL_EXCHANGE_URL=f"http://127.0.0.1:{ports['TRADAI_LOCAL_EXCHANGE_PORT']}")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "tradai_dev.bootstrap"], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    ready = {"local stores": time.monotonic() - started, "sample loaded": time.monotonic() - started}
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    log = (home / "recipe.log").open("w")
    commands = [
        [sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(ports["TRADAI_LOCAL_EXCHANGE_PORT"])],
        [str(BIN / "mlflow"), "server", "--backend-store-uri", env["MLFLOW_TRACKING_URI"], "--default-artifact-root",
         str(home / "mlartifacts"), "--host", "127.0.0.1", "--port", str(ports["TRADAI_MLFLOW_PORT"])],
        [str(BIN / "dagster"), "dev", "--host", "127.0.0.1", "--port", str(ports["TRADAI_DAGSTER_PORT"]),
         "--workspace", str(REPO / "workspace.yaml")],
        [str(BIN / "uvicorn"), "--factory", "tradai_api.app:create_app_from_environment", "--host", "127.0.0.1",
         "--port", str(ports["TRADAI_API_PORT"])],
    ]
    processes = [subprocess.Popen(c, cwd=home / "dagster" if "dev" in c else REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True) for c in commands]
    probes = {
        "exchange simulator": http_probe(f"{env['TRADAI_LOCAL_EXCHANGE_URL']}/api/v3/ping"),
        "MLflow UI": http_probe(f"http://127.0.0.1:{ports['TRADAI_MLFLOW_PORT']}/health"),
        "Dagster UI": dagster_ui_probe(f"{dagster_url}/graphql"),
        "Dagster daemon": dagster_daemon_probe(f"{dagster_url}/graphql"),
        "HTTP API": api_probe(f"http://127.0.0.1:{ports['TRADAI_API_PORT']}"),
    }
    try:
        while probes:
            for name, probe in list(probes.items()):
                if probe() is not None:
                    ready[name] = time.monotonic() - started
                    del probes[name]
            if any(p.poll() is not None for p in processes):
                raise RuntimeError(f"a service of the shell recipe exited; see {home / 'recipe.log'}")
            time.sleep(0.5)
        ready["all (banner printed)"] = time.monotonic() - started
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
    return ready


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    lines = []
    for round_number in range(args.rounds):
        for name, start in (("devserver", devserver_start), ("shell recipe", shell_recipe_start)):
            with tempfile.TemporaryDirectory(prefix="tradai-bench-dev-") as tmp:
                home = Path(tmp) / "tradai"
                for which in ("first", "second"):
                    before = load()
                    ready = start(home)
                    figures = ", ".join(f"{service} {seconds:.0f}" for service, seconds in sorted(ready.items(), key=lambda kv: kv[1]))
                    line = f"round {round_number + 1}, {name}, {which} start (load average {before} before): {figures} (s)"
                    print(line, flush=True)
                    lines.append(line)
    print(report("make dev start-up", "python -m bench.dev_start", lines))


if __name__ == "__main__":
    main()
