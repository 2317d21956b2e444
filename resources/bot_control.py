"""The kill switch: stop every live bot at once, whatever the backend (ECS services or local processes).

Used by the kill-switch job and the API alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from resources.bot_services import BotServiceError, BotServices, BotState


class KillSwitchError(BotServiceError):
    def __init__(self, report: "KillReport"):
        self.report = report
        failed = "; ".join(f"{bot}: {reason}" for bot, reason in report.errors.items())
        super().__init__(
            f"kill switch: {len(report.errors)} bot(s) could not be stopped ({failed}); "
            f"stopped: {', '.join(s.strategy_id for s in report.stopped) or 'none'}"
        )


@dataclass
class KillReport:
    stopped: list[BotState] = field(default_factory=list)  # states after stopping
    left_running: list[BotState] = field(default_factory=list)  # dry-run bots left alone
    errors: dict[str, str] = field(default_factory=dict)  # strategy id -> why it could not be stopped

    def __iter__(self):
        return iter(self.stopped)

    def __len__(self) -> int:
        return len(self.stopped)


def kill_all_live(bot_services: BotServices, include_dry_run: bool = False) -> KillReport:
    """Stop every running live bot (and dry-run ones too with ``include_dry_run``) at once.

    Every bot is tried even when one fails; then ``KillSwitchError`` names each that could not be
    stopped."""
    report = KillReport()
    for state in bot_services.list_bots():
        if not state.running:
            continue
        if state.mode != "live" and not include_dry_run:
            report.left_running.append(state)
            continue
        try:
            report.stopped.append(bot_services.stop(state.strategy_id))
        except Exception as exc:  # every other bot must still be stopped
            report.errors[state.strategy_id] = f"{type(exc).__name__}: {exc}"
    if report.errors:
        raise KillSwitchError(report)
    return report

