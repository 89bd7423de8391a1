"""Reserved referral beds: departments publish a daily number; target approval books one, atomically."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from tortoise import connections
from tortoise.expressions import F

from accounts.principal import Principal
from directory import cache
from directory.admin import own_department
from errors import Conflict, Forbidden, InvalidInput
from models import CapacityDay, Department, Role
from referrals.access import approver_here
from security.audit import audited
from sql_batch import dialect_sql
from timeutil import china_today

MAX_RANGE_DAYS = 366


def days_between(start: date, end: date) -> list[date]:
    if end < start:
        raise InvalidInput("结束日期不能早于开始日期", code="INVALID_DATE_RANGE")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise InvalidInput("日期范围不能超过一年", code="INVALID_DATE_RANGE")
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


async def capacity_between(department_id: int, start: date, end: date) -> list[dict]:
    rows = {r.day: r for r in await CapacityDay.filter(department_id=department_id, day__gte=start, day__lte=end)}
    return [{"date": day.isoformat(), "capacity": rows[day].capacity if day in rows else 0,
             "booked": rows[day].booked if day in rows else 0,
             "available": max(rows[day].capacity - rows[day].booked, 0) if day in rows else 0}
            for day in days_between(start, end)]


PUBLISH_AHEAD_DAYS = 365  # beds are published for admissions from today (China) up to a year ahead


async def set_capacity(department_id: int, days: dict[date, int], *, actor_staff_id: int | None = None) -> None:
    """Publish reserved beds per day, all days or none: a day outside the window or below what is already
    booked refuses the whole request, and nothing of it is written."""
    today = china_today()
    last = today + timedelta(days=PUBLISH_AHEAD_DAYS)
    outside = sorted(day for day in days if not today <= day <= last)
    if outside:
        raise InvalidInput(f"只能发布 {today.isoformat()} 至 {last.isoformat()} 的床位"
                           f"（{outside[0].isoformat()} 不在其中）", code="INVALID_DATE_RANGE",
                           detail={"date": outside[0].isoformat()})
    if any(capacity < 0 for capacity in days.values()):
        raise InvalidInput("床位数不能为负数", code="INVALID_CAPACITY")
    department = await cache.department(department_id)
    async with audited("admin.capacity_published", "department", str(department.public_id),
                       actor_staff_id=actor_staff_id,
                       institution_id=department.institution_id) as detail:  # type: ignore[attr-defined]
        detail["beds"] = {day.isoformat(): capacity for day, capacity in sorted(days.items())}
        for day, capacity in sorted(days.items()):
            row, created = await CapacityDay.get_or_create(department_id=department_id, day=day,
                                                           defaults={"capacity": capacity})
            if created:
                continue
            changed = await CapacityDay.filter(id=row.id, booked__lte=capacity).update(capacity=capacity)
            if not changed:
                booked = (await CapacityDay.get(id=row.id)).booked
                raise Conflict(f"{day.isoformat()} 已预约 {booked} 床，不能少于已预约数",
                               code="CAPACITY_BELOW_BOOKED", detail={"date": day.isoformat(), "booked": booked})


# One statement (both databases return rows from an UPDATE): the day's row is only read when no bed was free,
# to say why.
BOOK = ("UPDATE capacity_day SET booked = booked + 1 WHERE department_id = $1 AND day = $2 AND booked < capacity "
        "RETURNING *")


async def book(department_id: int, day: date) -> CapacityDay:
    """Take one reserved bed; a conditional UPDATE, so concurrent approvers can never overbook. Returns the
    day's row as booked."""
    taken = await connections.get("default").execute_query_dict(dialect_sql(BOOK), [department_id, day])
    if taken:
        return CapacityDay._init_from_db(**taken[0])
    row = await CapacityDay.get_or_none(department_id=department_id, day=day)
    if row is None or row.capacity == 0:
        raise Conflict(f"{day.isoformat()} 该科室未预留转诊床位", code="NO_RESERVED_BEDS",
                       detail={"date": day.isoformat()})
    raise Conflict(f"{day.isoformat()} 预留床位已满，请选择其他日期", code="BEDS_FULL",
                   detail={"date": day.isoformat(), "capacity": row.capacity})


async def release(capacity_day_id: int | None) -> None:
    if capacity_day_id is not None:
        await CapacityDay.filter(id=capacity_day_id, booked__gt=0).update(booked=F("booked") - 1)


async def department_to_publish(principal: Principal, public_id: uuid.UUID) -> Department:
    """The department whose reserved beds the caller may publish: admins and approvers, their own institution's."""
    principal.require_staff()
    if Role.ADMIN not in principal.roles and not await approver_here(principal):
        raise Forbidden("仅机构管理员和审批人员可发布预留床位", code="ROLE_REQUIRED")
    return await own_department(principal, public_id)
