"""The filters every figure takes, who may see what, and plain SQL that runs on both backends.

Figures are computed directly from the rows (referral, survey_invitation, capacity_day), each in a few
aggregate statements over indexed columns: no rollup to keep in step, so a figure is always what the rows say.
Only portable SQL is used (CASE, window functions, integer division), with the placeholders of the backend."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from tortoise import connections

from accounts.principal import Principal
from errors import Forbidden, InvalidInput, NotFound
from models import Department, Institution, Role

MAX_RANGE = timedelta(days=5 * 366)


class Sql:
    """Collects parameters and writes the backend's placeholder for each (`$n` on PostgreSQL, `?` on SQLite)."""

    def __init__(self) -> None:
        self.connection = connections.get("default")
        self.postgres = self.connection.capabilities.dialect == "postgres"
        self.params: list[Any] = []

    def p(self, value: Any) -> str:
        if isinstance(value, date) and not self.postgres:
            value = value.isoformat()  # SQLite keeps dates as ISO text
        self.params.append(value)
        return f"${len(self.params)}" if self.postgres else "?"

    async def rows(self, text: str) -> list[dict]:
        return await self.connection.execute_query_dict(text, self.params)


@dataclass(frozen=True)
class Filters:
    """What a figure is about: submitted (or invited) China days start..end, a direction, one institution (as
    source or target), one department (as source or target). `scope` is the caller's institution, None for the
    consortium office."""

    start: date | None = None
    end: date | None = None
    direction: str | None = None
    institution_id: int | None = None
    department_id: int | None = None
    scope: int | None = None

    def where(self, sql: Sql, *, day: str = "submitted_day", alias: str = "") -> list[str]:
        """SQL conditions for these filters on a table with the referral's columns."""
        a = f"{alias}." if alias else ""
        clauses = [f"{a}{day} IS NOT NULL"]
        if self.start is not None:
            clauses.append(f"{a}{day} >= {sql.p(self.start)}")
        if self.end is not None:
            clauses.append(f"{a}{day} <= {sql.p(self.end)}")
        if self.direction is not None:
            clauses.append(f"{a}direction = {sql.p(self.direction)}")
        for institution in (self.scope, self.institution_id):
            if institution is not None:
                clauses.append(f"({a}source_institution_id = {sql.p(institution)} "
                               f"OR {a}target_institution_id = {sql.p(institution)})")
        if self.department_id is not None:
            clauses.append(f"({a}source_department_id = {sql.p(self.department_id)} "
                           f"OR {a}target_department_id = {sql.p(self.department_id)})")
        return clauses

    def describe(self) -> dict:
        return {"from": self.start.isoformat() if self.start else None,
                "to": self.end.isoformat() if self.end else None, "direction": self.direction}


def scope_of(principal: Principal) -> int | None:
    """The institution whose figures the caller sees (None: all of them); 403 for anyone but admins."""
    if principal.staff_id is not None and Role.CONSORTIUM_ADMIN in principal.roles:
        return None
    if principal.staff_id is not None and Role.ADMIN in principal.roles:
        return principal.institution_id
    raise Forbidden("统计数据仅限机构管理员和医联体办公室查看", code="STATS_FORBIDDEN")


async def build_filters(principal: Principal, *, start: date | None, end: date | None, direction: str | None,
                        institution: uuid.UUID | None, department: uuid.UUID | None) -> Filters:
    """Check the filters (a clear 4xx for each mistake) and resolve public ids."""
    scope = scope_of(principal)
    if start is not None and end is not None:
        if start > end:
            raise InvalidInput("开始日期不能晚于结束日期", code="INVALID_DATE_RANGE",
                               detail={"from": start.isoformat(), "to": end.isoformat()})
        if end - start > MAX_RANGE:
            raise InvalidInput("统计日期范围不能超过五年", code="INVALID_DATE_RANGE",
                               detail={"from": start.isoformat(), "to": end.isoformat()})
    institution_id = department_id = None
    if institution is not None:
        row = await Institution.get_or_none(public_id=institution, deleted_at=None)
        if row is None:
            raise NotFound("未找到该机构", code="INSTITUTION_NOT_FOUND")
        institution_id = row.id
    if department is not None:
        dept = await Department.get_or_none(public_id=department, deleted_at=None)
        if dept is None or (institution_id is not None and dept.institution_id != institution_id):  # type: ignore[attr-defined]
            raise NotFound("未找到该科室", code="DEPARTMENT_NOT_FOUND")
        department_id = dept.id
    return Filters(start, end, direction, institution_id, department_id, scope)
