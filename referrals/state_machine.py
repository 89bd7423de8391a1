"""The referral state machine (DESIGN §4) as one explicit table, pure: no HTTP, no database.

A transition is allowed when a row matches (state, action, side, role). Sides say how the caller
stands to the referral: the `referrer` (the doctor who wrote it), `source` / `target` staff of the two
institutions, or the `system` (timers). The API, `allowed_actions` and the tests all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    DRAFT = "draft"
    PENDING_SOURCE = "pending_source"
    PENDING_TARGET = "pending_target"
    SCHEDULED = "scheduled"
    ADMITTED = "admitted"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Action(StrEnum):
    EDIT = "edit"
    SUBMIT = "submit"
    APPROVE = "approve"
    REJECT = "reject"
    REDIRECT = "redirect"
    CANCEL = "cancel"
    CHECK_IN = "check_in"
    COMPLETE = "complete"
    EXPIRE = "expire"
    RESUBMIT = "resubmit"
    RESCHEDULE = "reschedule"


class Side(StrEnum):
    REFERRER = "referrer"
    SOURCE = "source"
    TARGET = "target"
    SYSTEM = "system"


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    LATERAL = "lateral"


# FHIR Task.status for the interop view.
FHIR_STATUS = {
    Status.DRAFT: "draft", Status.PENDING_SOURCE: "requested", Status.PENDING_TARGET: "received",
    Status.SCHEDULED: "accepted", Status.ADMITTED: "in-progress", Status.COMPLETED: "completed",
    Status.REJECTED: "rejected", Status.CANCELLED: "cancelled", Status.EXPIRED: "failed",
}

STATUS_NAMES = {
    Status.DRAFT: "草稿", Status.PENDING_SOURCE: "待转出机构审批", Status.PENDING_TARGET: "待接收机构审批",
    Status.SCHEDULED: "已预约入院", Status.ADMITTED: "已入院", Status.COMPLETED: "已完成",
    Status.REJECTED: "已拒绝", Status.CANCELLED: "已取消", Status.EXPIRED: "已过期（未到院）",
}

ACTION_NAMES = {
    Action.EDIT: "修改草稿", Action.SUBMIT: "提交转诊", Action.APPROVE: "审批通过", Action.REJECT: "拒绝",
    Action.REDIRECT: "改转其他机构", Action.CANCEL: "取消转诊", Action.CHECK_IN: "入院登记",
    Action.COMPLETE: "完成并回传", Action.EXPIRE: "逾期未到院", Action.RESUBMIT: "重新发起",
    Action.RESCHEDULE: "改约入院日期",
}

DIRECTION_NAMES = {Direction.UP: "上转", Direction.DOWN: "下转", Direction.LATERAL: "平转"}

TERMINAL = frozenset({Status.COMPLETED, Status.REJECTED, Status.CANCELLED, Status.EXPIRED})
OPEN = frozenset(Status) - TERMINAL


@dataclass(frozen=True)
class Transition:
    state: Status
    action: Action
    side: Side
    role: str  # a staff role, or "system"
    to: Status
    # Only for SUBMIT: whether this row applies when the source institution must approve first.
    needs_source_approval: bool | None = None


T = Transition
S, A = Status, Action
TABLE: tuple[Transition, ...] = (
    T(S.DRAFT, A.EDIT, Side.REFERRER, "doctor", S.DRAFT),
    T(S.DRAFT, A.SUBMIT, Side.REFERRER, "doctor", S.PENDING_SOURCE, needs_source_approval=True),
    T(S.DRAFT, A.SUBMIT, Side.REFERRER, "doctor", S.PENDING_TARGET, needs_source_approval=False),
    T(S.PENDING_SOURCE, A.APPROVE, Side.SOURCE, "approver", S.PENDING_TARGET),
    T(S.PENDING_SOURCE, A.REJECT, Side.SOURCE, "approver", S.REJECTED),
    T(S.PENDING_TARGET, A.APPROVE, Side.TARGET, "approver", S.SCHEDULED),
    T(S.PENDING_TARGET, A.REJECT, Side.TARGET, "approver", S.REJECTED),
    T(S.PENDING_TARGET, A.REDIRECT, Side.TARGET, "approver", S.PENDING_TARGET),
    T(S.DRAFT, A.CANCEL, Side.REFERRER, "doctor", S.CANCELLED),
    T(S.PENDING_SOURCE, A.CANCEL, Side.REFERRER, "doctor", S.CANCELLED),
    T(S.PENDING_TARGET, A.CANCEL, Side.REFERRER, "doctor", S.CANCELLED),
    T(S.SCHEDULED, A.CANCEL, Side.REFERRER, "doctor", S.CANCELLED),
    T(S.SCHEDULED, A.RESCHEDULE, Side.TARGET, "approver", S.SCHEDULED),
    T(S.SCHEDULED, A.CHECK_IN, Side.TARGET, "admission_clerk", S.ADMITTED),
    T(S.SCHEDULED, A.EXPIRE, Side.SYSTEM, "system", S.EXPIRED),
    T(S.ADMITTED, A.COMPLETE, Side.TARGET, "doctor", S.COMPLETED),
    # Resubmitting leaves the rejected referral as it is and creates a new, linked one.
    T(S.REJECTED, A.RESUBMIT, Side.REFERRER, "doctor", S.REJECTED),
)


class TransitionNotAllowed(Exception):
    """No row of a state table (a referral's, a consultation's) permits `action` in `state`."""

    def __init__(self, state: StrEnum, action: StrEnum) -> None:
        self.state, self.action = state, action
        super().__init__(f"{action} not allowed in {state}")


def _matches(row: Transition, state: Status, action: Action, sides: set[Side], roles: set[str],
             needs_source_approval: bool) -> bool:
    return (row.state == state and row.action == action and row.side in sides and row.role in roles
            and (row.needs_source_approval is None or row.needs_source_approval == needs_source_approval))


def match(state: Status, action: Action, *, sides: set[Side], roles: set[str],
          needs_source_approval: bool = True) -> Transition:
    """The table row that permits `action` (its side and role say in what capacity the caller acts)."""
    for row in TABLE:
        if _matches(row, state, action, sides, roles, needs_source_approval):
            return row
    raise TransitionNotAllowed(state, action)


def next_state(state: Status, action: Action, *, sides: set[Side], roles: set[str],
               needs_source_approval: bool = True) -> Status:
    """The state after `action`, or TransitionNotAllowed when no row of the table permits it."""
    return match(state, action, sides=sides, roles=roles, needs_source_approval=needs_source_approval).to


def allowed_actions(state: Status, *, sides: set[Side], roles: set[str],
                    needs_source_approval: bool = True) -> list[Action]:
    """Every action this caller may take now, in the table's order, without duplicates."""
    seen: list[Action] = []
    for row in TABLE:
        if row.action not in seen and _matches(row, state, row.action, sides, roles, needs_source_approval):
            seen.append(row.action)
    return seen


def is_permitted_somewhere(action: Action, side: Side, role: str) -> bool:
    return any(row.action == action and row.side == side and row.role == role for row in TABLE)


LEVEL_RANK = {"primary": 1, "county": 2, "tertiary": 3}


def direction_of(source_level: str, target_level: str) -> Direction:
    """Up when the target is of a higher level, down when lower, lateral between peers."""
    source, target = LEVEL_RANK[source_level], LEVEL_RANK[target_level]
    if target > source:
        return Direction.UP
    if target < source:
        return Direction.DOWN
    return Direction.LATERAL
