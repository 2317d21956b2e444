"""The supervisor of one local bot: runs the command in ``<bot dir>/launch.json`` and keeps it running.

    python -m tradai_bot.supervisor supervise BOT_DIR

It restarts the bot whenever it exits without being asked to, waiting ``restart_delay_seconds`` in
between, and gives up (state ``failed``) after ``max_restarts`` crashes in a row; a run longer than
``stable_seconds`` starts the count again. SIGTERM or SIGINT stop it: the bot gets SIGTERM, then
SIGKILL after ``stop_timeout_seconds``. Its state is in ``status.json`` beside ``launch.json``.

Standard library only (psutil, for ``supervisor_pid``, is imported on use), so that a supervisor
starts in a fraction of a second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tradai_core.state_files import now, read_json, write_json


def supervise(bot_dir: Path) -> int:
    """Run the bot described by ``launch.json`` until told to stop or it crashes too often."""
    launch = read_json(bot_dir / "launch.json")
    stop_requested = False

    def request_stop(signum: int, _frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    restarts = 0
    crashes_in_a_row = 0
    exit_code: int | None = None  # of the previous run, kept in the status while the bot runs again
    status_file = bot_dir / "status.json"
    with open(bot_dir / "bot.log", "ab") as log:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(
                launch["command"],
                cwd=bot_dir,
                env={**os.environ, **launch["environment"]},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
            write_json(
                status_file,
                {
                    "state": "running",
                    "bot_pid": child.pid,
                    "restarts": restarts,
                    "last_exit_code": exit_code,
                    "updated_at": now(),
                },
            )
            print(f"{now()} started bot process {child.pid}", flush=True)
            exit_code = _wait(child, lambda: stop_requested, launch["stop_timeout_seconds"])
            print(f"{now()} bot process {child.pid} exited with {exit_code}", flush=True)
            if stop_requested:
                write_json(
                    status_file,
                    {"state": "stopped", "restarts": restarts, "last_exit_code": exit_code, "updated_at": now()},
                )
                return 0
            healthy_run = time.monotonic() - started >= launch["stable_seconds"]
            crashes_in_a_row = 1 if healthy_run else crashes_in_a_row + 1
            if crashes_in_a_row > launch["max_restarts"]:
                write_json(
                    status_file,
                    {"state": "failed", "restarts": restarts, "last_exit_code": exit_code, "updated_at": now()},
                )
                print(f"{now()} giving up after {crashes_in_a_row} crashes in a row", flush=True)
                return 1
            restarts += 1
            write_json(
                status_file,
                {"state": "restarting", "restarts": restarts, "last_exit_code": exit_code, "updated_at": now()},
            )
            deadline = time.monotonic() + launch["restart_delay_seconds"]
            while time.monotonic() < deadline and not stop_requested:
                time.sleep(0.1)
            if stop_requested:
                write_json(
                    status_file,
                    {"state": "stopped", "restarts": restarts, "last_exit_code": exit_code, "updated_at": now()},
                )
                return 0


def _wait(child: subprocess.Popen, stopping: Any, stop_timeout: float) -> int:
    """The child's exit code; once a stop is requested, SIGTERM it, and SIGKILL it after ``stop_timeout``."""
    stop_seen_at: float | None = None
    while True:
        code = child.poll()
        if code is not None:
            return code
        if stopping():
            if stop_seen_at is None:
                stop_seen_at = time.monotonic()
                child.send_signal(signal.SIGTERM)
            elif time.monotonic() - stop_seen_at > stop_timeout:
                child.kill()
        time.sleep(0.1)


def _die_with_parent() -> None:
    """In the bot process before exec: on Linux, end the bot if its supervisor dies (even by SIGKILL)."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "supervise":
        raise SystemExit("usage: python -m tradai_bot.supervisor supervise BOT_DIR")
    raise SystemExit(supervise(Path(sys.argv[2])))
