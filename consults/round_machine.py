"""The remote ward round state machine as one explicit table, pure.

scheduled ─start─▶ in_progress ─record─▶ in_progress ─complete─▶ completed
scheduled|in_progress ─cancel─▶ cancelled

Either side's participating doctors and experts run the round (`participant`); the organiser also cancels it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RoundStatus(StrEnum):
    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class RoundAction(StrEnum):
    START = "start"
    RECORD = "record"
    COMPLETE = "complete"
    CANCEL = "cancel"


STATUS_NAMES = {RoundStatus.SCHEDULED: "待查房", RoundStatus.IN_PROGRESS: "查房中", RoundStatus.COMPLETED: "已完成",
                RoundStatus.CANCELLED: "已取消"}
OPEN = frozenset({RoundStatus.SCHEDULED, RoundStatus.IN_PROGRESS})
CLINICAL_ROLES = frozenset({"doctor", "expert"})


@dataclass(frozen=True)
class RoundTransition:
    state: RoundStatus
    action: RoundAction
    to: RoundStatus


R, RA = RoundStatus, RoundAction
ROUND_TABLE: tuple[RoundTransition, ...] = (
    RoundTransition(R.SCHEDULED, RA.START, R.IN_PROGRESS),
    RoundTransition(R.IN_PROGRESS, RA.RECORD, R.IN_PROGRESS),
    RoundTransition(R.IN_PROGRESS, RA.COMPLETE, R.COMPLETED),
    RoundTransition(R.SCHEDULED, RA.CANCEL, R.CANCELLED),
    RoundTransition(R.IN_PROGRESS, RA.CANCEL, R.CANCELLED),
)


def round_next(state: RoundStatus, action: RoundAction) -> RoundStatus | None:
    """The state after `action`, or None when the table has no row for it."""
    return next((row.to for row in ROUND_TABLE if row.state == state and row.action == action), None)


def round_actions(state: RoundStatus, *, participant: bool, organiser: bool) -> list[RoundAction]:
    """What a caller may do now: participants run the round, the organiser may also cancel it."""
    if not participant:
        return []
    return [row.action for row in ROUND_TABLE if row.state == state
            and (row.action != RoundAction.CANCEL or organiser)]
