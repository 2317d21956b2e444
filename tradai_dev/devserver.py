"""``make dev``: the whole product on one machine, started, watched and stopped by one small supervisor.

    python -m tradai_dev.devserver

1. Prepares the local stores in one process (``tradai_dev.bootstrap prepare``) before any server
   starts: servers that share a fresh store would race to create it.
2. Starts every service in a process group of its own, with its output in ``$TRADAI_HOME/logs/``:
   the simulated exchange, the MLflow UI, the HTTP API, one Dagster code server that the Dagster
   webserver and daemon share, and, at low CPU priority, the loading of the offline sample.
3. Says which services are still coming up, and, once every health endpoint has answered, prints one
   block of what answers where, with an API token. A service that exits or does not answer stops
   everything, with the end of its log shown.
4. One Ctrl-C (or SIGTERM) stops every service and every local bot, waiting up to ``STOP_SECONDS``
   before killing what is left, and exits 0; a second one kills everything at once.

Ports come from ``TRADAI_DAGSTER_PORT`` (3000), ``TRADAI_MLFLOW_PORT`` (5000), ``TRADAI_API_PORT``
(8000) and ``TRADAI_LOCAL_EXCHANGE_PORT`` (8300), all on 127.0.0.1. ``TRADAI_LOCAL_EXCHANGE_URL``
unset starts the simulated exchange for dry-run bots; empty sends them to the real exchange; any other
URL is used as it is.

Standard library, PyYAML and psutil only: the supervisor itself starts at once and stays small.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tradai_core import settings

HOST = "127.0.0.1"
PORTS = {"TRADAI_DAGSTER_PORT": 3000, "TRADAI_MLFLOW_PORT": 5000, "TRADAI_API_PORT": 8000, "TRADAI_LOCAL_EXCHANGE_PORT": 8300}
START_SECONDS = 600.0  # a service not answering by then has failed (a loaded 2-core machine takes ~2 min)
STOP_SECONDS = 9.0  # grace after SIGTERM before SIGKILL: the whole stop stays within 10 s
PROGRESS_SECONDS = 5.0
LOG_TAIL_LINES = 40
BIN = Path(sys.executable).parent


class ServiceFailed(RuntimeError):
    """A service exited, said it cannot work, or did not answer in time."""


def port(variable: str) -> int:
    text = os.environ.get(variable, "")
    if not text:
        return PORTS[variable]
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SystemExit(f"{variable}={text!r}: expected a TCP port number")
    return int(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# Health probes: None while not ready, a short description once ready; ServiceFailed when it never will be.


def _get(url: str, timeout: float = 3.0) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (OSError, ValueError):  # refused, reset, timed out or an HTTP error: not answering yet
        return None


def _graphql(url: str, query: str) -> dict | None:
    request = urllib.request.Request(url, data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5.0) as response:
            return json.loads(response.read()).get("data")
    except (OSError, ValueError):
        return None


def http_probe(url: str) -> Callable[[], str | None]:
    return lambda: f"{url} answers" if _get(url) is not None else None


LOCATIONS_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
DAEMONS_QUERY = "{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }"


def dagster_ui_probe(graphql_url: str) -> Callable[[], str | None]:
    """Ready once the webserver has loaded every code location; a location that fails to load is fatal."""

    def probe() -> str | None:
        data = _graphql(graphql_url, LOCATIONS_QUERY)
        entries = ((data or {}).get("workspaceOrError") or {}).get("locationEntries")
        if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
            return None
        for entry in entries:
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                raise ServiceFailed(f"code location {entry['name']} failed to load: {loaded.get('message', '').strip()}")
        return f"{graphql_url.removesuffix('/graphql')} answers, code location {', '.join(e['name'] for e in entries)} loaded"

    return probe


def dagster_daemon_probe(graphql_url: str) -> Callable[[], str | None]:
    """Ready once every required daemon (schedules, sensors, run queue...) has sent a heartbeat."""

    def probe() -> str | None:
        data = _graphql(graphql_url, DAEMONS_QUERY)
        statuses = (((data or {}).get("instance") or {}).get("daemonHealth") or {}).get("allDaemonStatuses")
        required = [s for s in statuses or [] if s["required"]]
        if not required or not all(s["healthy"] for s in required):
            return None
        return f"{len(required)} daemons heartbeating"

    return probe


def api_probe(url: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        body = _get(f"{url}/api/v1/health", timeout=15.0)  # its checks have a 10 s deadline of their own
        return None if body is None else f"{url}/api/v1/health answers ({json.loads(body)['status']})"

    return probe


def tcp_open(port_number: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((HOST, port_number)) == 0


# Services ---------------------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    command: list[str]
    cwd: Path
    log: Path
    probe: Callable[[], str | None] | None  # None: up while its process runs (its users prove it works)
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    nice: int = 0
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    ready_after: float | None = None
    detail: str = ""
    failure: str | None = None

    def start(self, environment: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        nice = self.nice
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env={**environment, **self.env}, stdin=subprocess.DEVNULL,
                stdout=handle, stderr=subprocess.STDOUT,
                # A session of its own: the terminal's Ctrl-C reaches the supervisor only, which stops the
                # whole group (the service and whatever it started) in order.
                start_new_session=True,
                preexec_fn=(lambda: os.nice(nice)) if nice else None,
            )
        self.started_at = time.monotonic()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])


def group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in the process group."""
    for process in psutil.process_iter(["status"]):
        try:
            if process.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(process.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return False


def local_bot_processes(home: Path) -> list:
    """Every running local bot supervisor under ``home/bots`` and the bot it runs (psutil processes)."""
    from tradai_core.state_files import supervisor_pid

    bots_dir = home / "bots"
    found = []
    for bot_dir in sorted(bots_dir.iterdir()) if bots_dir.is_dir() else []:
        pid = supervisor_pid(bot_dir)
        if pid is None:
            continue
        try:
            supervisor = psutil.Process(pid)
            found += [supervisor, *supervisor.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    return found


def stop_local_bots(home: Path, timeout: float) -> list[str]:
    """SIGTERM every local bot's supervisor (it stops its bot) and wait; kill what is left after
    ``timeout``. Returns what had to be killed."""
    processes = local_bot_processes(home)
    supervisors = [p for p in processes if _runs_supervisor(p)]
    for process in supervisors:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    return [f"bot process {p.pid}" for p in alive]


def _runs_supervisor(process) -> bool:
    try:
        return "tradai_bot.supervisor" in process.cmdline()
    except psutil.NoSuchProcess:
        return False


def take_terminal() -> Callable[[], None]:
    """Make the supervisor's own process group the terminal's foreground; returns how to give it back.

    ``make`` dies of any Ctrl-C it receives (and exits 130) even when its recipe stops cleanly and exits
    0. In the foreground group of its own, the supervisor alone hears Ctrl-C, stops everything, and
    ``make`` then exits with the supervisor's status. Without a terminal (scripts, CI) nothing changes.
    """
    try:
        terminal = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return lambda: None
    try:
        foreground = os.tcgetpgrp(terminal)
        if foreground != os.getpgrp():  # started in the background: leave the terminal alone
            os.close(terminal)
            return lambda: None
        os.setpgid(0, 0)
        _set_foreground(terminal, os.getpgrp())
    except OSError:
        os.close(terminal)
        return lambda: None

    def give_back() -> None:
        try:
            _set_foreground(terminal, foreground)
        except OSError:
            pass  # make's group is gone: the shell takes the terminal back itself
        os.close(terminal)

    return give_back


def _set_foreground(terminal: int, pgid: int) -> None:
    # A process outside the foreground group that changes it gets SIGTTOU (which would stop it).
    previous = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(terminal, pgid)
    finally:
        signal.signal(signal.SIGTTOU, previous)


def workspace_entries(path: Path) -> list[dict]:
    """The ``python_module`` entries of the repository's workspace.yaml."""
    import yaml

    entries = []
    for entry in yaml.safe_load(path.read_text())["load_from"]:
        module = entry.get("python_module")
        if not isinstance(module, dict):
            raise SystemExit(f"{path}: make dev serves python_module entries only, not {entry}")
        entries.append(module)
    return entries


class DevServer:
    def __init__(self, environment: dict[str, str]):
        self.home = settings.tradai_home()
        self.logs = self.home / "logs"
        self.dagster_home = Path(environment.get("DAGSTER_HOME") or self.home / "dagster")
        self.ports = {name: port(name) for name in PORTS}
        self.dagster_url = f"http://{HOST}:{self.ports['TRADAI_DAGSTER_PORT']}"
        self.mlflow_url = f"http://{HOST}:{self.ports['TRADAI_MLFLOW_PORT']}"
        self.api_url = f"http://{HOST}:{self.ports['TRADAI_API_PORT']}"
        exchange_url = environment.get("TRADAI_LOCAL_EXCHANGE_URL")
        self.own_exchange = exchange_url is None
        if self.own_exchange:
            exchange_url = f"http://{HOST}:{self.ports['TRADAI_LOCAL_EXCHANGE_PORT']}"
        self.exchange_url = exchange_url.strip()
        tracking_uri = environment.get("MLFLOW_TRACKING_URI") or settings.local_mlflow_uri()
        self.environment = {
            **environment,
            "TRADAI_HOME": str(self.home),
            "DAGSTER_HOME": str(self.dagster_home),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_UI_URL": self.mlflow_url,
            "TRADAI_DAGSTER_GRAPHQL_URL": f"{self.dagster_url}/graphql",
            "TRADAI_API_URL": self.api_url,
            "TRADAI_LOCAL_EXCHANGE_URL": self.exchange_url,
            # MLflow's background job runner (GenAI evaluation jobs, trace roll-ups) starts eight
            # processes that each import MLflow; the product tracks runs and models only.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        if self.exchange_url:
            # Bots here trade the local exchange's candles, stored by the local_exchange_candles sensor
            # within half a minute of a deployment; until then a new bot's stored candles are the 2018
            # sample, and the stale-data sensor would pause and resume it. Set the variable to watch them.
            self.environment.setdefault("TRADAI_STALE_CANDLES_PAUSE_AFTER", "off")
        self.services: list[Service] = []
        self.sample: Service | None = None
        self.preparing: list[Service] = []
        self.probed: dict[str, tuple[str | ServiceFailed, float]] = {}  # by service: outcome, when
        self.stop_requests = 0
        self.give_back_terminal: Callable[[], None] = lambda: None
        self.workspace_dir = tempfile.TemporaryDirectory(prefix="tradai-dev-workspace-")

    # Start-up -------------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        print(text, flush=True)

    def start_exchange(self) -> None:
        """The simulated exchange uses no store: it starts while the stores are prepared."""
        if self.own_exchange:
            exchange = Service(
                "exchange simulator", [sys.executable, "-m", "simulator", "--host", HOST,
                                       "--port", str(self.ports["TRADAI_LOCAL_EXCHANGE_PORT"])],
                settings.REPO_ROOT, self.logs / "exchange.log", http_probe(f"{self.exchange_url}/api/v3/ping"), self.exchange_url,
            )
            self.launch(exchange)

    def prepare(self) -> None:
        """Each store with migrations is created by one process, before the servers that use it start."""
        started = time.monotonic()
        self.say("Preparing the local stores (Dagster instance, MLflow store)...")
        for step in ("dagster-instance", "mlflow-store"):
            preparation = Service(f"preparing the {step}", [sys.executable, "-m", "tradai_dev.bootstrap", step],
                                  settings.REPO_ROOT, self.logs / f"{step}.log", None)
            preparation.start(self.environment)
            self.preparing.append(preparation)
        while any(step.exited() is None for step in self.preparing) and not self.stop_requests:
            self.check_running(self.services)
            time.sleep(0.2)
        if self.stop_requests:
            return
        for step in self.preparing:
            if step.exited() not in (0, None):
                raise ServiceFailed(f"{step.name} failed (exit {step.exited()}); the end of {step.log}:\n{step.log_tail()}")
            self.say(f"  {step.log.read_text().strip().splitlines()[-1]}")  # the step's summary; MLflow's migration log stays in the file
        self.say(f"  ready after {time.monotonic() - started:5.1f} s: local stores")

    def build_services(self) -> tuple[list[Service], list[Service]]:
        """The services started once the stores are ready, and the Dagster ones that wait for the code server."""
        repo = settings.REPO_ROOT
        log = self.logs.joinpath
        first: list[Service] = []
        first.append(Service(
            "MLflow UI", [str(BIN / "mlflow"), "server", "--backend-store-uri", self.environment["MLFLOW_TRACKING_URI"],
                          "--default-artifact-root", str(self.home / "mlartifacts"), "--host", HOST,
                          "--port", str(self.ports["TRADAI_MLFLOW_PORT"]),
                          # One worker serves one user; each of the default four imports MLflow (~10 s of CPU).
                          "--workers", "1"],
            repo, log("mlflow.log"), http_probe(f"{self.mlflow_url}/health"), self.mlflow_url,
            # MLflow's own server imports a module Starlette deprecates; nothing the user can act on.
            env={"PYTHONWARNINGS": "ignore:starlette.middleware.wsgi is deprecated:UserWarning"},
        ))
        first.append(Service(
            "HTTP API", [str(BIN / "uvicorn"), "--factory", "tradai_api.app:create_app_from_environment",
                         "--host", HOST, "--port", str(self.ports["TRADAI_API_PORT"])],
            repo, log("api.log"), api_probe(self.api_url), f"{self.api_url}/docs",
        ))
        # One code server that the webserver and the daemon share (as `dagster dev` runs it, without
        # its wrapper process): the code location is imported once, and the UI's Reload reloads it.
        workspace = []
        dagster = [str(BIN / "dagster"), "code-server", "start", "--host", HOST]
        for entry in workspace_entries(repo / "workspace.yaml"):
            code_port = free_port()
            name = entry.get("location_name") or entry["module_name"]
            first.append(Service(
                f"code server {name}", [*dagster, "--port", str(code_port), "--module-name", entry["module_name"],
                                        *(["--attribute", entry["attribute"]] if entry.get("attribute") else []),
                                        "--location-name", name, "--working-directory", str(repo)],
                repo, log(f"code-server-{name}.log"), None,
                # Calls still running at a stop (a sensor tick, say) get 2 s instead of the gRPC
                # timeout (60 s): the code server stops in about 4 s.
                env={"DAGSTER_GRPC_SHUTDOWN_GRACE_PERIOD": "2"},
            ))
            workspace.append({"grpc_server": {"host": HOST, "port": code_port, "location_name": name}})
        workspace_file = Path(self.workspace_dir.name) / "workspace.yaml"
        workspace_file.write_text(json.dumps({"load_from": workspace}))  # JSON is YAML
        graphql = f"{self.dagster_url}/graphql"
        # Started in DAGSTER_HOME so that Dagster reads only its dagster.yaml.
        dagster_services = [
            Service("Dagster UI", [str(BIN / "dagster-webserver"), "--host", HOST, "--port", str(self.ports["TRADAI_DAGSTER_PORT"]),
                                   "--workspace", str(workspace_file)],
                    self.dagster_home, log("dagster-webserver.log"), dagster_ui_probe(graphql), self.dagster_url),
            Service("Dagster daemon", [str(BIN / "dagster-daemon"), "run", "--workspace", str(workspace_file)],
                    self.dagster_home, log("dagster-daemon.log"), dagster_daemon_probe(graphql)),
        ]
        return first, dagster_services

    def start(self) -> None:
        first, dagster_services = self.build_services()
        for service in first:
            self.launch(service)
        # Loading the sample yields the CPU to the servers coming up; its runs appear in the UI.
        self.sample = Service("sample data", [sys.executable, "-m", "tradai_dev.bootstrap", "load-sample"],
                              settings.REPO_ROOT, self.logs / "sample.log", None, nice=10)
        self.sample.start(self.environment)
        code_servers = [s for s in first if s.name.startswith("code server")]
        code_ports = [int(s.command[s.command.index("--port") + 1]) for s in code_servers]
        started = time.monotonic()
        # The webserver and the daemon connect to the code server as they start: start them once it listens.
        while not all(tcp_open(p) for p in code_ports):
            self.check_running(code_servers)
            if self.stop_requests:
                return
            if time.monotonic() - started > START_SECONDS:
                raise ServiceFailed(f"the code server did not listen within {START_SECONDS:.0f} s")
            time.sleep(0.2)
        for service in dagster_services:
            self.launch(service)

    def check_running(self, services: list[Service]) -> None:
        for service in services:
            code = service.exited()
            if code is not None:
                raise ServiceFailed(f"{service.name} exited with status {code}; the end of {service.log}:\n{service.log_tail()}")

    def launch(self, service: Service) -> None:
        """Start the service and, when it has a health endpoint, poll it from a thread of its own."""
        service.start(self.environment)
        self.services.append(service)
        if service.probe is not None:
            threading.Thread(target=self._poll, args=(service,), name=f"probe {service.name}", daemon=True).start()

    def _poll(self, service: Service) -> None:
        while not self.stop_requests:
            try:
                detail = service.probe()
            except ServiceFailed as exc:
                self.probed[service.name] = (exc, time.monotonic())
                return
            if detail is not None:
                self.probed[service.name] = (detail, time.monotonic())
                return
            time.sleep(0.5)

    def wait_ready(self, begun: float) -> None:
        pending = {s.name: s for s in self.services if s.probe is not None}
        last_progress = time.monotonic()
        while pending and not self.stop_requests:
            self.check_running(self.services)
            for name in list(pending):
                if name in self.probed:
                    service = pending.pop(name)
                    outcome, answered_at = self.probed[name]
                    if isinstance(outcome, BaseException):
                        raise ServiceFailed(f"{name}: {outcome}; the end of {service.log}:\n{service.log_tail()}")
                    service.ready_after, service.detail = answered_at - begun, outcome
                    self.say(f"  ready after {service.ready_after:5.1f} s: {name} ({outcome})")
            now = time.monotonic()
            for service in pending.values():
                if now - service.started_at > START_SECONDS:
                    raise ServiceFailed(f"{service.name} did not answer within {START_SECONDS:.0f} s; the end of {service.log}:\n{service.log_tail()}")
            if pending and now - last_progress >= PROGRESS_SECONDS:
                self.say(f"  still starting after {now - begun:5.1f} s: {', '.join(pending)}")
                last_progress = now
            time.sleep(0.2)

    def token(self) -> str:
        result = subprocess.run([str(BIN / "tradai"), "token", "--subject", os.environ.get("USER", "developer")],
                                env=self.environment, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ServiceFailed(f"tradai token failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def banner(self, begun: float) -> None:
        api = api_probe(self.api_url)()  # every server is up now: the API's own checks should all pass
        lines = [f"TradAI is up after {time.monotonic() - begun:.1f} s, on {HOST}:"]
        rows = [("Dagster UI and daemon", self.dagster_url), ("MLflow UI", self.mlflow_url), ("HTTP API", f"{self.api_url}/docs")]
        if self.own_exchange:
            rows.append(("exchange simulator (dry-run bots)", self.exchange_url))
        for label, url in rows:
            lines.append(f"  {label:<34} {url}")
        if not self.own_exchange:
            lines.append(f"  {'dry-run bots trade on':<34} {self.exchange_url or 'the real exchange'}")
        lines.append(f"  {'API health':<34} {api}")
        lines.append(f"  {'logs':<34} {self.logs}")
        lines += ["For the CLI and scripts (a 12 h token signed with the development secret):",
                  f"  export TRADAI_API_URL={self.api_url}", f"  export TRADAI_API_TOKEN={self.token()}",
                  "Ctrl-C stops everything."]
        self.say("\n".join(lines))

    # Running and stopping ---------------------------------------------------------------------------

    def request_stop(self, signum: int, _frame) -> None:
        self.stop_requests += 1
        if self.stop_requests > 1:
            self.kill_everything()
            self.say("Stopped by force.")
            self.give_back_terminal()
            os._exit(1)

    def watch(self) -> None:
        reported_sample = False
        while not self.stop_requests:
            self.check_running(self.services)
            if self.sample is not None and not reported_sample and self.sample.exited() is not None:
                reported_sample = True
                self.report_sample()
            time.sleep(0.2)

    def report_sample(self) -> None:
        code = self.sample.exited()
        if code == 0:
            summary = [line for line in self.sample.log.read_text().splitlines() if line.startswith("  ")]
            self.say("Sample data:\n" + "\n".join(summary))
        else:
            self.say(f"Loading the sample FAILED (exit {code}); the servers keep running. The end of {self.sample.log}:\n{self.sample.log_tail()}")

    def stop(self) -> list[str]:
        """SIGTERM every group (services, the sample loader) and bot, and let the store preparations
        finish; SIGKILL the rest of what is left after STOP_SECONDS. Returns what had to be killed."""
        started = [s for s in [*self.preparing, *self.services, self.sample] if s is not None and s.process is not None]
        # A store's migration stopped half-way could leave it unusable: preparations finish on their own.
        services = [s for s in started if s not in self.preparing]
        deadline = time.monotonic() + STOP_SECONDS
        # All at once: the code server, the slowest to stop, waits for its clients' calls to end,
        # which they do as they stop.
        for service in services:
            _signal_group(service, signal.SIGTERM)
        killed = stop_local_bots(self.home, STOP_SECONDS)
        self._wait_gone(services, deadline)
        unfinished = [s for s in self.preparing if s.exited() is None]
        if unfinished:
            self.say(f"Waiting for {', '.join(s.name for s in unfinished)} to finish (Ctrl-C again kills it)...")
            for step in unfinished:
                step.process.wait()
        for service in started:
            if service.exited() is None or group_alive(service.process.pid):
                killed.append(service.name)
                _signal_group(service, signal.SIGKILL)
                service.process.wait()
        return killed

    @staticmethod
    def _wait_gone(services: list[Service], deadline: float) -> None:
        for service in services:
            while time.monotonic() < deadline and (service.exited() is None or group_alive(service.process.pid)):
                time.sleep(0.1)

    def kill_everything(self) -> None:
        for service in [*self.preparing, *self.services, self.sample]:
            if service is not None and service.process is not None:
                _signal_group(service, signal.SIGKILL)
        for process in local_bot_processes(self.home):
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass


def _signal_group(service: Service, signum: int) -> None:
    try:
        os.killpg(service.process.pid, signum)
    except ProcessLookupError:
        pass  # the whole group has exited


def main() -> int:
    begun = time.monotonic()
    server = DevServer(dict(os.environ))
    server.give_back_terminal = take_terminal()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, server.request_stop)
    status = 0
    try:
        server.say(f"Starting TradAI (Ctrl-C stops it); service logs in {server.logs}")
        server.start_exchange()
        server.prepare()
        if not server.stop_requests:
            server.start()
        if not server.stop_requests:
            server.wait_ready(begun)
        if not server.stop_requests:
            server.banner(begun)
            server.watch()
    except ServiceFailed as failure:
        server.say(f"make dev stops: {failure}")
        status = 1
    server.say("Stopping every service and local bot...")
    stopping = time.monotonic()
    killed = server.stop()
    server.workspace_dir.cleanup()
    if killed:
        server.say(f"Killed after {STOP_SECONDS:.0f} s: {', '.join(killed)}")
    server.say(f"Stopped in {time.monotonic() - stopping:.1f} s.")
    server.give_back_terminal()
    return status


if __name__ == "__main__":
    sys.exit(main())
