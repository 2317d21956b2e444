"""Listing and stopping bots whatever the backend (ECS services or local processes): the kill switch.

Used by the deployment assets, the kill-switch job, the heartbeat sensor and the API alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from resources.bot_services import (
    BotServiceError,
    BotSpec,
    EcsBotServices,
    ServiceState,
)

LOCAL_IMAGE = "local"
RUNNING_LOCAL_STATES = ("starting", "running", "restarting")


class KillSwitchError(BotServiceError):
    def __init__(self, report: "KillReport"):
        self.report = report
        failed = "; ".join(f"{bot}: {reason}" for bot, reason in report.errors.items())
        super().__init__(
            f"kill switch: {len(report.errors)} bot(s) could not be stopped ({failed}); "
            f"stopped: {', '.join(s.strategy_id for s in report.stopped) or 'none'}"
        )


def config_placeholder(bot_services: Any, bot_id: str) -> str:
    if isinstance(bot_services, EcsBotServices):
        return f"s3://{bot_services.configs_bucket_name}/bots/{bot_id}/"
    return str(bot_services.bot_dir(bot_id))


def bot_mode(state: Any) -> str:
    """The trading mode of a listed bot; an ECS service without its tag counts as live (stop it to be safe)."""
    if isinstance(state, ServiceState):
        return state.trading_mode or "live"
    return getattr(state, "mode", None) or "dry_run"  # the local backend runs dry-run bots only


def is_running(state: Any) -> bool:
    """Whether the bot is meant to be running now (a crash-looping local bot is not)."""
    if isinstance(state, ServiceState):
        return state.status == "ACTIVE" and state.desired_count > 0
    return getattr(state, "status", None) in RUNNING_LOCAL_STATES


def list_bots(bot_services: Any, ids: Iterable[str] = ()) -> list[Any]:
    """Every bot the backend knows; a backend without ``list_bots`` is asked about ``ids`` one by one."""
    if hasattr(bot_services, "list_bots"):
        return list(bot_services.list_bots())
    return [s for s in (bot_services.describe(i) for i in ids) if s.status != "absent"]


def stop_bot(bot_services: Any, bot_id: str) -> Any:
    if hasattr(bot_services, "stop"):
        return bot_services.stop(bot_id)
    return bot_services.reconcile(
        BotSpec(strategy=bot_id, strategy_id=bot_id, mode="stopped", image=LOCAL_IMAGE,
                config_path=config_placeholder(bot_services, bot_id))
    )


@dataclass
class KillReport:
    stopped: list[Any] = field(default_factory=list)  # states after stopping
    left_running: list[Any] = field(default_factory=list)  # dry-run bots left alone
    errors: dict[str, str] = field(default_factory=dict)  # strategy id -> why it could not be stopped

    def __iter__(self):
        return iter(self.stopped)

    def __len__(self) -> int:
        return len(self.stopped)


def kill_all_live(bot_services: Any, include_dry_run: bool = False, ids: Iterable[str] = ()) -> KillReport:
    """Stop every running live bot (and dry-run ones too with ``include_dry_run``) at once.

    Every bot is tried even when one fails; then ``KillSwitchError`` names each that could not be
    stopped. ``ids`` are strategy ids to ask about when the backend cannot list its bots."""
    report = KillReport()
    for state in list_bots(bot_services, ids):
        if not is_running(state):
            continue
        if bot_mode(state) != "live" and not include_dry_run:
            report.left_running.append(state)
            continue
        try:
            report.stopped.append(stop_bot(bot_services, state.strategy_id))
        except Exception as exc:  # every other bot must still be stopped
            report.errors[state.strategy_id] = f"{type(exc).__name__}: {exc}"
    if report.errors:
        raise KillSwitchError(report)
    return report

