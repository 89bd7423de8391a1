"""Worklists: outgoing, incoming, to approve, and a patient's own; filters, cursor pages, badge counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from accounts.principal import Principal
from cursors import decode_cursor, encode_cursor
from errors import Forbidden, InvalidInput
from models import Referral
from referrals.access import NEVER_SUBMITTED, approver_here
from referrals.state_machine import Status
from timeutil import CHINA_TZ

BOXES = ("outgoing", "incoming", "to_approve", "mine")


@dataclass
class Filters:
    status: list[str] | None = None
    direction: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    q: str | None = None


async def box_query(principal: Principal, box: str) -> QuerySet:
    if box not in BOXES:
        raise InvalidInput("未知的列表类型", code="INVALID_BOX", detail={"allowed": list(BOXES)})
    if box == "mine":
        if principal.staff_id is not None and not principal.patient_ids:
            raise Forbidden("“我的转诊”是患者及家属查看本人转诊的列表；医务人员请查看 outgoing（转出）、"
                            "incoming（转入）或 to_approve（待审批）", code="PATIENTS_ONLY",
                            detail={"staff_boxes": [b for b in BOXES if b != "mine"]})
        principal.require_patient()
        return Referral.filter(patient_id__in=list(principal.patient_ids)).exclude(NEVER_SUBMITTED)
    principal.require_staff()
    inst = principal.institution_id
    if box == "outgoing":
        return Referral.filter(source_institution_id=inst)
    if box == "incoming":
        return Referral.filter(target_institution_id=inst).exclude(NEVER_SUBMITTED)
    if not await approver_here(principal):
        raise Forbidden("仅审批人员可查看待审批列表", code="ROLE_REQUIRED")
    return Referral.filter(Q(status=Status.PENDING_SOURCE, source_institution_id=inst)
                           | Q(status=Status.PENDING_TARGET, target_institution_id=inst))


def apply_filters(query: QuerySet, filters: Filters) -> QuerySet:
    if filters.status:
        unknown = set(filters.status) - {str(s) for s in Status}
        if unknown:
            raise InvalidInput("未知的状态", code="INVALID_STATUS", detail={"unknown": sorted(unknown)})
        query = query.filter(status__in=filters.status)
    if filters.direction:
        query = query.filter(direction=filters.direction)
    # Days are China's; the bounds go to the database in UTC, as times are stored (SQLite compares them as text,
    # so a +08:00 bound would be compared with +00:00 values character by character).
    if filters.date_from:
        query = query.filter(created_at__gte=datetime.combine(filters.date_from, time.min, CHINA_TZ).astimezone(UTC))
    if filters.date_to:
        query = query.filter(created_at__lt=datetime.combine(filters.date_to + timedelta(days=1), time.min,
                                                             CHINA_TZ).astimezone(UTC))
    if filters.q:
        text = filters.q.strip()
        query = query.filter(Q(code__istartswith=text) | Q(patient_name__icontains=text))
    return query


async def newest_first(query: QuerySet, cursor: str | None, limit: int) -> tuple[list[Referral], str | None]:
    if cursor:
        query = query.filter(id__lt=decode_cursor(cursor, Referral))
    rows = await query.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].id) if more and rows else None
    return rows, next_cursor


async def badge_counts(principal: Principal) -> dict[str, int]:
    """Open items per box, for the badges on the mini-program's tabs."""
    if principal.staff_id is None:
        if not principal.patient_ids:
            return {}
        query = await box_query(principal, "mine")
        return {"mine": await query.filter(status__in=[Status.PENDING_SOURCE, Status.PENDING_TARGET,
                                                       Status.SCHEDULED, Status.ADMITTED]).count()}
    counts = {}
    open_states = [Status.PENDING_SOURCE, Status.PENDING_TARGET, Status.SCHEDULED, Status.ADMITTED]
    counts["outgoing"] = await (await box_query(principal, "outgoing")).filter(status__in=open_states).count()
    counts["incoming"] = await (await box_query(principal, "incoming")).filter(status__in=open_states).count()
    if await approver_here(principal):
        counts["to_approve"] = await (await box_query(principal, "to_approve")).count()
    return counts
