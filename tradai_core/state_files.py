"""Small JSON state files written atomically: a local bot's launch and status files, shared by the
resource that starts bots and the supervisor that runs them. Standard library only."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def now() -> str:
    return datetime.now(UTC).isoformat()


def write_json(path: Path, value: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(temporary, path)  # readers never see half a file


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def supervisor_pid(bot_dir: Path) -> int | None:
    """The process id of the bot's supervisor while it runs (a reused id of another process does not count)."""
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
