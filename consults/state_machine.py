"""The consultation state machine as one explicit table, pure: no HTTP, no database.

requested ─accept─▶ accepted ─conclude─▶ concluded
requested ─decline─▶ declined      requested|accepted ─cancel─▶ cancelled      requested ─expire─▶ expired
accepted ─invite─▶ accepted (MDT)

Sides say how the caller stands to the consultation: the `requester` (the doctor who asked), the `pool` (the
named expert, or every active expert of the addressed department), the `expert` who accepted, an `invited`
expert, or the `system` (timers).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from referrals.state_machine import TransitionNotAllowed


class Status(StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    CONCLUDED = "concluded"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Action(StrEnum):
    ACCEPT = "accept"
    DECLINE = "decline"
    INVITE = "invite"
    CONCLUDE = "conclude"
    CANCEL = "cancel"
    EXPIRE = "expire"


class Side(StrEnum):
    REQUESTER = "requester"
    POOL = "pool"
    EXPERT = "expert"
    INVITED = "invited"
    SYSTEM = "system"


STATUS_NAMES = {
    Status.REQUESTED: "待专家接诊", Status.ACCEPTED: "会诊中", Status.CONCLUDED: "已出具会诊意见",
    Status.DECLINED: "已婉拒", Status.CANCELLED: "已取消", Status.EXPIRED: "已过期（无人接诊）",
}
ACTION_NAMES = {
    Action.ACCEPT: "接诊", Action.DECLINE: "婉拒", Action.INVITE: "邀请专家（多学科会诊）",
    Action.CONCLUDE: "出具会诊意见", Action.CANCEL: "取消会诊", Action.EXPIRE: "超时未接诊",
}

TERMINAL = frozenset({Status.CONCLUDED, Status.DECLINED, Status.CANCELLED, Status.EXPIRED})
OPEN = frozenset(Status) - TERMINAL

# The expert's structured opinion.
RECOMMENDATIONS = {
    "refer_up": "建议上转", "treat_locally": "建议在本地治疗", "further_tests": "建议完善检查",
    "refer_elsewhere": "建议转诊其他机构",
}
DECLINE_REASONS = {
    "out_of_scope": "不属于本专业范围", "insufficient_information": "病历资料不足", "unavailable": "专家近期无法接诊",
    "emergency_needs_transfer": "病情危急，请直接急诊转诊", "other": "其他原因",
}


@dataclass(frozen=True)
class Transition:
    state: Status
    action: Action
    side: Side
    role: str  # a staff role, or "system"
    to: Status


T = Transition
S, A = Status, Action
TABLE: tuple[Transition, ...] = (
    T(S.REQUESTED, A.ACCEPT, Side.POOL, "expert", S.ACCEPTED),
    T(S.REQUESTED, A.DECLINE, Side.POOL, "expert", S.DECLINED),
    T(S.ACCEPTED, A.INVITE, Side.EXPERT, "expert", S.ACCEPTED),
    T(S.ACCEPTED, A.INVITE, Side.REQUESTER, "doctor", S.ACCEPTED),
    T(S.ACCEPTED, A.CONCLUDE, Side.EXPERT, "expert", S.CONCLUDED),
    T(S.REQUESTED, A.CANCEL, Side.REQUESTER, "doctor", S.CANCELLED),
    T(S.ACCEPTED, A.CANCEL, Side.REQUESTER, "doctor", S.CANCELLED),
    T(S.REQUESTED, A.EXPIRE, Side.SYSTEM, "system", S.EXPIRED),
)


def match(state: Status, action: Action, *, sides: set[Side], roles: set[str]) -> Transition:
    """The table row that permits `action` (its side and role say in what capacity the caller acts)."""
    for row in TABLE:
        if row.state == state and row.action == action and row.side in sides and row.role in roles:
            return row
    raise TransitionNotAllowed(state, action)


def allowed_actions(state: Status, *, sides: set[Side], roles: set[str]) -> list[Action]:
    """Every action this caller may take now, in the table's order, without duplicates."""
    seen: list[Action] = []
    for row in TABLE:
        if row.action not in seen and row.state == state and row.side in sides and row.role in roles:
            seen.append(row.action)
    return seen


def is_permitted_somewhere(action: Action, sides: set[Side], roles: set[str]) -> bool:
    """Whether the caller could take `action` in some state (so a refusal now is about the state, 409)."""
    return any(row.action == action and row.side in sides and row.role in roles for row in TABLE)
