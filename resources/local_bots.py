"""Dry-run bots on one machine: a supervised ``freqtrade trade --dry-run`` process per bot.

Each bot has a directory ``$TRADAI_HOME/bots/<strategy_id>/``:

- ``launch.json``: the command, its environment and the restart policy, written by ``reconcile``;
- ``supervisor.pid`` and ``status.json`` (state, bot process id, restarts, last exit code);
- ``freqtrade.log`` (freqtrade's log, rotated by freqtrade), ``bot.log`` (the process's console
  output, crashes included) and ``supervisor.log`` (starts, exits, restarts);
- ``trades.sqlite`` and ``user/``: the bot's own freqtrade database and user directory.

The supervisor is a detached process (``python -m resources.bot_supervisor supervise <dir>``), so a
bot outlives the Dagster run that started it; see that module for its restart policy.

Reconciling an unchanged spec leaves a running bot alone (same processes). The local backend runs
dry-run bots only: live trading belongs on the managed deployment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field

from resources import aws_contract
from resources.bot_services import BotSpec, BotSpecError
from resources.bot_supervisor import now, read_json, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
SUPERVISOR_MODULE = "resources.bot_supervisor"
STATES = ("starting", "running", "restarting", "failed", "stopped")


@dataclass(frozen=True)
class LocalBotState:
    strategy_id: str
    status: str  # one of STATES, or "absent" when the bot was never deployed or was deleted
    supervisor_pid: int | None = None
    bot_pid: int | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    log_path: Path | None = None
    actions: tuple[str, ...] = ()


class LocalBotServices(ConfigurableResource):
    """Bots as supervised local processes under ``$TRADAI_HOME/bots``."""

    home: str | None = Field(default=None, description="TradAI home; $TRADAI_HOME or .tradai/ when None.")
    strategies_dir: str = Field(default=str(REPO_ROOT / "strategies"), description="Freqtrade strategy files.")
    freqtrade: str = Field(
        default=str(Path(sys.executable).parent / "freqtrade"), description="The freqtrade executable."
    )
    max_restarts: int = Field(default=3, ge=0, description="Crashes in a row the supervisor restarts.")
    stable_seconds: float = Field(default=300, gt=0, description="A run this long resets the crash count.")
    restart_delay_seconds: float = Field(default=5, ge=0, description="Wait before restarting a crashed bot.")
    stop_timeout_seconds: float = Field(default=30, gt=0, description="Grace after SIGTERM before SIGKILL.")

    @property
    def bots_dir(self) -> Path:
        home = self.home or os.environ.get(aws_contract.EnvVar.TRADAI_HOME) or str(REPO_ROOT / ".tradai")
        return Path(home).resolve() / "bots"

    def bot_dir(self, strategy_id: str) -> Path:
        return self.bots_dir / strategy_id

    def reconcile(self, spec: BotSpec) -> LocalBotState:
        """Start, restart (changed spec) or stop the bot; an unchanged running bot is left alone."""
        bot_dir = self.bot_dir(spec.strategy_id)
        if spec.mode == "stopped":
            return self._stop(spec.strategy_id)
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
            self._stop(spec.strategy_id)
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

    def delete(self, strategy_id: str) -> LocalBotState:
        """Stop the bot and forget its deployment; its logs and trade database stay for inspection."""
        bot_dir = self.bot_dir(strategy_id)
        if not (bot_dir / "launch.json").is_file():
            return LocalBotState(strategy_id=strategy_id, status="absent")
        self._stop(strategy_id)
        for name in ("launch.json", "status.json", "supervisor.pid"):
            (bot_dir / name).unlink(missing_ok=True)
        return LocalBotState(strategy_id=strategy_id, status="absent", actions=("deleted",))

    # --- internals ------------------------------------------------------------------------------

    def _launch(self, spec: BotSpec, bot_dir: Path) -> dict[str, Any]:
        environment = {
            aws_contract.EnvVar.STRATEGY: spec.strategy,
            aws_contract.EnvVar.STRATEGY_ID: spec.strategy_id,
            aws_contract.EnvVar.TRADING_MODE: spec.mode,
            **aws_contract.bot_freqtrade_overrides(
                trading_mode=spec.mode, stake_amount=spec.stake_amount, pairs=spec.pairs
            ),
        }
        command = [
            self.freqtrade,
            "trade",
            "--config", str(Path(spec.config_path).resolve()),
            "--strategy", spec.strategy,
            "--strategy-path", self.strategies_dir,
            "--dry-run",
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
        """The supervisor's process id while it runs (a reused id of another process does not count)."""
        import psutil

        pid_file = bot_dir / "supervisor.pid"
        if not pid_file.is_file():
            return None
        pid = int(pid_file.read_text())
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                if process.ppid() == os.getpid():
                    os.waitpid(pid, 0)  # reap a supervisor this process started and that has exited
                return None
            if str(bot_dir) not in process.cmdline():
                return None
        except psutil.NoSuchProcess:
            return None
        return pid

    def _stop(self, strategy_id: str) -> LocalBotState:
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
