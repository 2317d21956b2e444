"""Dry-run bots on one machine: a supervised ``tradai run-bot`` process (Freqtrade in dry run) per bot.

Each bot has a directory ``$TRADAI_HOME/bots/<strategy_id>/``:

- ``launch.json``: the command, its environment and the restart policy, written by ``reconcile``; the
  environment is the one a bot's container gets (``aws_contract.BOT_ENV`` and the freqtrade overrides,
  see ``tradai_bot.runtime``), with heartbeats going to ``$TRADAI_HOME/bots/state.db`` and, when
  ``exchange_url`` is set, ``TRADAI_LOCAL_EXCHANGE_URL`` (the bot trades on the local simulated exchange);
- ``supervisor.pid`` and ``status.json`` (state, bot process id, restarts, last exit code);
- ``freqtrade.log`` (freqtrade's log, rotated by freqtrade), ``bot.log`` (the process's console
  output, crashes included) and ``supervisor.log`` (starts, exits, restarts);
- ``trades.sqlite`` and ``user/``: the bot's own freqtrade database (read by ``resources.bot_trades``)
  and user directory.

``list_bots()`` describes every deployed bot (one with a ``launch.json``).

The supervisor is a detached process (``python -m tradai_bot.supervisor supervise <dir>``), so a
bot outlives the Dagster run that started it; see that module for its restart policy.

Reconciling an unchanged spec leaves a running bot alone (same processes). The local backend runs
dry-run bots only: live trading belongs on the managed deployment.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from resources import aws_contract
from resources.bot_services import BotServices, BotSpec, BotSpecError, BotState
from tradai_core.state_files import now, read_json, supervisor_pid, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
SUPERVISOR_MODULE = "tradai_bot.supervisor"
STATES = ("starting", "running", "restarting", "failed", "stopped")
RUNNING_STATES = ("starting", "running", "restarting")
LOCAL_IMAGE = "local"  # local bots run the installed program, not an image


@dataclass(frozen=True)
class LocalBotState(BotState):
    strategy_id: str
    status: str  # one of STATES, or "absent" when the bot was never deployed or was deleted
    supervisor_pid: int | None = None
    bot_pid: int | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    log_path: Path | None = None
    actions: tuple[str, ...] = ()

    @property
    def mode(self) -> str:
        return "dry_run"  # the local backend runs dry-run bots only

    @property
    def running(self) -> bool:
        return self.status in RUNNING_STATES

    @property
    def failure(self) -> str | None:
        if self.status != "failed":
            return None
        return (f"the bot kept crashing and its supervisor gave up after {self.restarts} restart(s) "
                f"(last exit code {self.last_exit_code})")

    def details(self) -> dict[str, Any]:
        known = {"supervisor_pid": self.supervisor_pid, "bot_pid": self.bot_pid, "restarts": self.restarts,
                 "last_exit_code": self.last_exit_code, "log": self.log_path}
        return {key: value for key, value in known.items() if value is not None}


class LocalBotServices(BotServices):
    """Bots as supervised local processes under ``$TRADAI_HOME/bots``."""

    home: str | None = Field(default=None, description="TradAI home; $TRADAI_HOME or .tradai/ when None.")
    strategies_dir: str = Field(default=str(REPO_ROOT / "strategies"), description="Freqtrade strategy files.")
    tradai: str = Field(
        default=str(Path(sys.executable).parent / "tradai"),
        description="The tradai executable; bots run `tradai run-bot`.",
    )
    arctic_uri: str | None = Field(
        default=None, description="ArcticDB the bots warm up from; ARCTICDB_URI or $TRADAI_HOME/arctic when None."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow of model strategies; MLFLOW_TRACKING_URI or $TRADAI_HOME/mlflow.db when None."
    )
    exchange_url: str | None = Field(
        default=None,
        description="URL of the local simulated exchange (simulator.binance) the bots trade on; "
        "$TRADAI_LOCAL_EXCHANGE_URL when None; empty: the real exchange.",
    )
    heartbeat_seconds: float = Field(default=60, gt=0, description="How often a bot writes its heartbeat.")
    max_restarts: int = Field(default=3, ge=0, description="Crashes in a row the supervisor restarts.")
    stable_seconds: float = Field(default=300, gt=0, description="A run this long resets the crash count.")
    restart_delay_seconds: float = Field(default=5, ge=0, description="Wait before restarting a crashed bot.")
    stop_timeout_seconds: float = Field(default=30, gt=0, description="Grace after SIGTERM before SIGKILL.")

    @property
    def home_dir(self) -> Path:
        return Path(self.home or os.environ.get(aws_contract.EnvVar.TRADAI_HOME) or str(REPO_ROOT / ".tradai")).resolve()

    @property
    def local_exchange_url(self) -> str | None:
        url = self.exchange_url if self.exchange_url is not None else os.environ.get(aws_contract.EnvVar.LOCAL_EXCHANGE_URL, "")
        return url.strip() or None

    @property
    def bots_dir(self) -> Path:
        return self.home_dir / "bots"

    def bot_dir(self, strategy_id: str) -> Path:
        return self.bots_dir / strategy_id

    def config_placeholder(self, strategy_id: str) -> str:
        return str(self.bot_dir(strategy_id))

    def image_for(self, mode: str) -> str:
        return LOCAL_IMAGE

    def live_refusal(self, strategy_id: str, exchange_secret: str) -> str | None:
        return "the local backend runs dry-run bots only (live bots run as ECS services)"

    def write_config(self, strategy_id: str, config: dict[str, Any]) -> str:
        """Store the config as ``<bot dir>/config-<hash>.json``; an unchanged config is not rewritten."""
        body = json.dumps(config, sort_keys=True, indent=1)
        path = self.bot_dir(strategy_id) / f"config-{hashlib.sha256(body.encode()).hexdigest()[:16]}.json"
        if not path.is_file() or path.read_text() != body:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(".tmp")
            temporary.write_text(body)
            os.replace(temporary, path)
        return str(path)

    def reconcile(self, spec: BotSpec) -> LocalBotState:
        """Start, restart (changed spec) or stop the bot; an unchanged running bot is left alone."""
        bot_dir = self.bot_dir(spec.strategy_id)
        if spec.mode == "stopped":
            return self.stop(spec.strategy_id)
        if spec.mode == "live":
            raise BotSpecError(f"bot {spec.strategy_id}: the local backend runs dry-run bots only")
        config = Path(spec.config_path)
        if not config.is_file():
            raise BotSpecError(f"bot {spec.strategy_id}: config file {config} does not exist")

        launch = self._launch(spec, bot_dir)
        launch_file = bot_dir / "launch.json"
        unchanged = launch_file.is_file() and json.loads(launch_file.read_text()) == launch
        if unchanged and self._supervisor_pid(bot_dir) is not None:
            return self.describe(spec.strategy_id)

        actions: list[str] = []
        if self._supervisor_pid(bot_dir) is not None:
            self.stop(spec.strategy_id)
            actions.append("stopped the previous bot")
        bot_dir.mkdir(parents=True, exist_ok=True)
        (bot_dir / "user").mkdir(exist_ok=True)
        write_json(launch_file, launch)
        write_json(bot_dir / "status.json", {"state": "starting", "restarts": 0, "updated_at": now()})
        with open(bot_dir / "supervisor.log", "ab") as log:
            supervisor = subprocess.Popen(
                [sys.executable, "-m", SUPERVISOR_MODULE, "supervise", str(bot_dir)],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the bot outlives the process that started it
            )
        (bot_dir / "supervisor.pid").write_text(str(supervisor.pid))
        actions.append("started supervisor")
        state = self.describe(spec.strategy_id)
        return LocalBotState(**{**state.__dict__, "actions": tuple(actions)})

    def describe(self, strategy_id: str) -> LocalBotState:
        bot_dir = self.bot_dir(strategy_id)
        if not (bot_dir / "launch.json").is_file():
            return LocalBotState(strategy_id=strategy_id, status="absent")
        status = read_json(bot_dir / "status.json")
        supervisor_pid = self._supervisor_pid(bot_dir)
        state = status.get("state", "starting")
        if supervisor_pid is None and state not in ("failed", "stopped"):
            state = "failed"  # the supervisor was killed without a chance to say so
        bot_pid = status.get("bot_pid") if supervisor_pid is not None and state == "running" else None
        return LocalBotState(
            strategy_id=strategy_id,
            status=state,
            supervisor_pid=supervisor_pid,
            bot_pid=bot_pid,
            restarts=status.get("restarts", 0),
            last_exit_code=status.get("last_exit_code"),
            log_path=bot_dir / "bot.log",
        )

    def list_bots(self) -> list[LocalBotState]:
        """Every deployed bot (stopped and failed ones included), by strategy id."""
        if not self.bots_dir.is_dir():
            return []
        return [
            self.describe(bot_dir.name)
            for bot_dir in sorted(self.bots_dir.iterdir())
            if (bot_dir / "launch.json").is_file()
        ]

    def stop(self, strategy_id: str) -> LocalBotState:
        """Stop the bot's supervisor (and with it the bot); its deployment stays."""
        bot_dir = self.bot_dir(strategy_id)
        pid = self._supervisor_pid(bot_dir)
        if pid is None:
            return self.describe(strategy_id)
        import psutil

        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
        # The supervisor itself waits stop_timeout_seconds for the bot before killing it.
        try:
            process.wait(timeout=self.stop_timeout_seconds + 10)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        state = self.describe(strategy_id)
        return LocalBotState(**{**state.__dict__, "actions": ("stopped",)})

    def delete(self, strategy_id: str) -> LocalBotState:
        """Stop the bot and forget its deployment; its logs and trade database stay for inspection."""
        bot_dir = self.bot_dir(strategy_id)
        if not (bot_dir / "launch.json").is_file():
            return LocalBotState(strategy_id=strategy_id, status="absent")
        self.stop(strategy_id)
        for name in ("launch.json", "status.json", "supervisor.pid"):
            (bot_dir / name).unlink(missing_ok=True)
        return LocalBotState(strategy_id=strategy_id, status="absent", actions=("deleted",))

    # --- internals ------------------------------------------------------------------------------

    def _launch(self, spec: BotSpec, bot_dir: Path) -> dict[str, Any]:
        E = aws_contract.EnvVar
        home = self.home_dir
        environment = {
            E.STRATEGY: spec.strategy,
            E.STRATEGY_ID: spec.strategy_id,
            E.TRADING_MODE: spec.mode,
            E.CONFIG_PATH: str(Path(spec.config_path).resolve()),
            E.MLFLOW_TRACKING_URI: self.mlflow_tracking_uri
            or os.environ.get(E.MLFLOW_TRACKING_URI)
            or f"sqlite:///{home / 'mlflow.db'}",
            E.ARCTICDB_S3_URI: self.arctic_uri or os.environ.get(E.ARCTICDB_URI) or f"lmdb://{home / 'arctic'}",
            E.TRADAI_ENV: "local",
            E.TRADAI_HOME: str(home),
            "TRADAI_HEARTBEAT_SECONDS": str(self.heartbeat_seconds),
            **aws_contract.bot_freqtrade_overrides(
                trading_mode=spec.mode, stake_amount=spec.stake_amount, pairs=spec.pairs
            ),
        }
        if self.local_exchange_url:
            environment[aws_contract.EnvVar.LOCAL_EXCHANGE_URL] = self.local_exchange_url
        command = [
            self.tradai,
            "run-bot",
            "--strategy-path", self.strategies_dir,
            "--workdir", str(bot_dir),
            "--db-url", f"sqlite:///{bot_dir / 'trades.sqlite'}",
            "--userdir", str(bot_dir / "user"),
            # freqtrade's own log file keeps whole lines (its console output is wrapped to the terminal).
            "--logfile", str(bot_dir / "freqtrade.log"),
        ]
        return {
            "command": command,
            "environment": environment,
            "max_restarts": self.max_restarts,
            "stable_seconds": self.stable_seconds,
            "restart_delay_seconds": self.restart_delay_seconds,
            "stop_timeout_seconds": self.stop_timeout_seconds,
        }

    def _supervisor_pid(self, bot_dir: Path) -> int | None:
        return supervisor_pid(bot_dir)
