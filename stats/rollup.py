"""Monthly rollups of the figures' counts and sums, per China month and place, and how a figure reads them.

`referral_month` (summary, Table 1): per month of submission, direction, source and target institution and
department (0 for none), status and rejection reason, the referrals and the counters the summary adds up.
`survey_month` (Table 2): per month of invitation, respondent, questionnaire and place, the invitations and
their answers' counts and sums.

A rollup changes with the write it reflects, in that write's transaction, by the difference of the row's
contribution before and after (`move`): a transition moves a referral from one status's row to another's (-1
old, +1 new), an invitation adds 1, an answer adds its scores. It is one statement per write, a multi-row
upsert (INSERT ... ON CONFLICT DO UPDATE, PostgreSQL and SQLite ≥ 3.24), since a month's row of a place may not
exist yet; concurrent writers to one row wait for each other on it. `rebuild` recomputes a rollup from its rows
with one INSERT ... SELECT ... GROUP BY (seed-history after its bulk load; migration 0017 for an existing
database).

A figure over a range of days (`read`) takes the whole months from the rollup and the days of the months the
range cuts from the rows (`split_range`), so it equals the direct computation over the rows for any range."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from tortoise import connections
from tortoise.transactions import in_transaction

from models.surveys import MAX_ITEMS
from sql_batch import Batch
from stats.facts import month_of
from stats.query import Filters, Sql

ITEMS = range(1, MAX_ITEMS + 1)


@dataclass(frozen=True)
class Rollup:
    table: str
    rows: str  # the table it sums up
    month: str  # yyyymm column, in both
    day: str  # China day column of the rows
    key: dict[str, str]  # rollup column → its value over a row (never NULL: a NULL key never matches on conflict)
    sums: dict[str, str]  # rollup column → its aggregate over rows
    counted: str = "1 = 1"  # which rows count

    def rebuild_sql(self) -> str:
        columns = [*self.key, *self.sums]
        return (f"INSERT INTO {self.table} ({', '.join(columns)}) "  # noqa: S608 (constants only)
                f"SELECT {', '.join([*self.key.values(), *self.sums.values()])} FROM {self.rows} "
                f"WHERE {self.counted} GROUP BY {', '.join(str(n) for n in range(1, len(self.key) + 1))}")


PLACE = {"direction": "direction", "source_institution_id": "source_institution_id",
         "target_institution_id": "target_institution_id",
         "source_department_id": "COALESCE(source_department_id, 0)",
         "target_department_id": "COALESCE(target_department_id, 0)"}

REFERRALS = Rollup(
    table="referral_month", rows="referral", month="submitted_month", day="submitted_day",
    key={"submitted_month": "submitted_month", **PLACE, "status": "status", "rejection_code": "rejection_code"},
    sums={"n": "COUNT(*)", "accepted": "COUNT(wait_target_s)",
          "redirected": "SUM(CASE WHEN redirects > 0 THEN 1 ELSE 0 END)", "redirects": "SUM(redirects)",
          "decisions": "SUM(decisions)", "late_decisions": "SUM(late_decisions)",
          "late_referrals": "SUM(CASE WHEN late_decisions > 0 THEN 1 ELSE 0 END)",
          "n_total": "COUNT(wait_total_s)", "sum_total": "COALESCE(SUM(wait_total_s), 0)"},
    counted="submitted_day IS NOT NULL")

SURVEYS = Rollup(
    table="survey_month", rows="survey_invitation", month="invited_month", day="invited_day",
    key={"invited_month": "invited_month", "respondent": "respondent", "form_id": "form_id", **PLACE},
    sums={"invitations": "COUNT(*)", "answers": "COUNT(answered_at)",
          "satisfied": "SUM(CASE WHEN satisfied THEN 1 ELSE 0 END)",
          **{f"sum{n}": f"COALESCE(SUM(s{n}), 0)" for n in ITEMS}, **{f"n{n}": f"COUNT(s{n})" for n in ITEMS}})


# -- keeping them -----------------------------------------------------------------------------------------------

Part = tuple[tuple, dict[str, int]]  # (key values, sums) of one row


def referral_part(referral: Any) -> Part | None:
    """What one referral row adds to referral_month (None for a draft, which no figure counts)."""
    if referral.submitted_day is None:
        return None
    key = (referral.submitted_month, str(referral.direction), referral.source_institution_id,
           referral.target_institution_id, referral.source_department_id or 0, referral.target_department_id or 0,
           str(referral.status), referral.rejection_code or "")
    total = referral.wait_total_s
    return key, {"n": 1, "accepted": int(referral.wait_target_s is not None),
                 "redirected": int(referral.redirects > 0), "redirects": referral.redirects,
                 "decisions": referral.decisions, "late_decisions": referral.late_decisions,
                 "late_referrals": int(referral.late_decisions > 0), "n_total": int(total is not None),
                 "sum_total": total or 0}


def invitation_part(invitation: Any) -> Part:
    """What one invitation row (with its answer's copy, if answered) adds to survey_month."""
    key = (invitation.invited_month, invitation.respondent, invitation.form_id, str(invitation.direction),
           invitation.source_institution_id, invitation.target_institution_id,
           invitation.source_department_id or 0, invitation.target_department_id or 0)
    scores = [getattr(invitation, f"s{n}") for n in ITEMS]
    return key, {"invitations": 1, "answers": int(invitation.answered_at is not None),
                 "satisfied": int(bool(invitation.satisfied)),
                 **{f"sum{n}": s or 0 for n, s in zip(ITEMS, scores, strict=True)},
                 **{f"n{n}": int(s is not None) for n, s in zip(ITEMS, scores, strict=True)}}


async def move(rollup: Rollup, before: Part | None, after: Part | None, *, batch: Batch | None = None,
               only_with: str | None = None) -> None:
    """Apply a row's change (before → after; None: not counted) to the rollup: one upsert, nothing when the
    row's contribution did not change. Call in the transaction of the write; or, on PostgreSQL, add it to the
    write's own statement (`batch`), done only if the CTE `only_with` returned a row."""
    deltas: dict[tuple, dict[str, int]] = {}
    for part, sign in ((before, -1), (after, 1)):
        if part is not None:
            row = deltas.setdefault(part[0], dict.fromkeys(rollup.sums, 0))
            for column, value in part[1].items():
                row[column] += sign * value
    # In key order: two writers moving referrals between the same two rows lock them in one order, no deadlock.
    changed = sorted((key, sums) for key, sums in deltas.items() if any(sums.values()))
    if not changed:
        return
    if batch is not None:
        batch.add("rollup", _upsert_in_batch(rollup, changed, batch, only_with))
        return
    connection = connections.get("default")
    postgres = connection.capabilities.dialect == "postgres"
    values: list = []
    rows = []
    for key, sums in changed:
        start = len(values)
        values += [*key, *(sums[c] for c in rollup.sums)]
        rows.append("(" + ", ".join(f"${n}" if postgres else "?" for n in range(start + 1, len(values) + 1)) + ")")
    await connection.execute_query(
        f"INSERT INTO {rollup.table} ({', '.join([*rollup.key, *rollup.sums])}) "  # noqa: S608 (our columns)
        f"VALUES {', '.join(rows)} ON CONFLICT ({', '.join(rollup.key)}) DO UPDATE SET "
        + ", ".join(f"{c} = {rollup.table}.{c} + excluded.{c}" for c in rollup.sums), values)


def _upsert_in_batch(rollup: Rollup, changed: list[tuple[tuple, dict[str, int]]], batch: Batch,
                     only_with: str | None) -> str:
    """The same upsert as a CTE of a PostgreSQL statement. Its rows come from a VALUES list in a subquery, where a
    bare parameter would be text: each is cast by its Python type (keys and sums are integers or text)."""
    columns = [*rollup.key, *rollup.sums]

    def typed(value: object) -> str:
        return f"{batch.param(value)}::{'text' if isinstance(value, str) else 'bigint'}"

    rows = ", ".join("(" + ", ".join(typed(v) for v in [*key, *(sums[c] for c in rollup.sums)]) + ")"
                     for key, sums in changed)
    condition = f" WHERE EXISTS (SELECT 1 FROM {only_with})" if only_with else ""
    # In key order, as `move` (rows are taken in the VALUES order): no two writers lock two rows in opposite orders.
    return (f"INSERT INTO {rollup.table} ({', '.join(columns)}) "  # noqa: S608 (our columns, placeholders)
            f"SELECT * FROM (VALUES {rows}) AS v ({', '.join(columns)}){condition} "
            f"ORDER BY {', '.join(str(n) for n in range(1, len(rollup.key) + 1))} "
            f"ON CONFLICT ({', '.join(rollup.key)}) DO UPDATE SET "
            + ", ".join(f"{c} = {rollup.table}.{c} + excluded.{c}" for c in rollup.sums))


async def rebuild(rollup: Rollup) -> None:
    """The whole rollup again from its rows (exact by construction), in one transaction."""
    async with in_transaction() as tx:
        await tx.execute_query(f"DELETE FROM {rollup.table}")  # noqa: S608 (constant)
        await tx.execute_query(rollup.rebuild_sql())


# -- reading them -----------------------------------------------------------------------------------------------

def split_range(start: date | None, end: date | None) -> tuple[tuple[int | None, int | None] | None,
                                                            list[tuple[date | None, date | None]]]:
    """A range of China days as whole months (first, last yyyymm; None: open; None for no whole month) and
    the day ranges left at its ends, so that months + days cover the range exactly once."""
    def first(day: date) -> bool:
        return day.day == 1

    def last(day: date) -> bool:
        return (day + timedelta(days=1)).day == 1

    if start is not None and end is not None and (start.year, start.month) == (end.year, end.month) \
            and not (first(start) and last(end)):
        return None, [(start, end)]
    days: list[tuple[date | None, date | None]] = []
    low = high = None
    if start is not None:
        low = month_of(start)
        if not first(start):
            month_end = (start.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            days.append((start, month_end))
            low = month_of(month_end + timedelta(days=1))
    if end is not None:
        high = month_of(end)
        if not last(end):
            days.append((end.replace(day=1), end))
            high = month_of(end.replace(day=1) - timedelta(days=1))
    if low is not None and high is not None and low > high:
        return None, days
    return (low, high), days


async def read(rollup: Rollup, filters: Filters, groups: dict[str, str], sums: list[str]) -> list[dict]:
    """Rows of (groups, sums) for `filters`: per whole-month stretch one statement over the rollup, per cut
    month one over the rows. `groups` are name → expression over columns both tables have (alias `i`), `sums`
    names of the rollup's sums; rows of the same group from different statements are for the caller to add."""
    months, days = split_range(filters.start, filters.end)
    places = replace(filters, start=None, end=None)
    select = ", ".join(f"{expr} AS {name}" for name, expr in groups.items())
    group_by = f" GROUP BY {', '.join(groups.values())}" if groups else ""
    result: list[dict] = []
    if months is not None:
        sql = Sql()
        clauses = places.where(sql, day=rollup.month, alias="i")
        if months[0] is not None:
            clauses.append(f"i.{rollup.month} >= {sql.p(months[0])}")
        if months[1] is not None:
            clauses.append(f"i.{rollup.month} <= {sql.p(months[1])}")
        measures = ", ".join(f"SUM(i.{c}) AS {c}" for c in sums)
        result += await sql.rows(f"SELECT {select + ', ' if select else ''}{measures} FROM {rollup.table} i "
                                 f"WHERE {' AND '.join(clauses)}{group_by}")
    for start, end in days:
        sql = Sql()
        where = " AND ".join(replace(places, start=start, end=end).where(sql, day=rollup.day, alias="i"))
        measures = ", ".join(f"{rollup.sums[c]} AS {c}" for c in sums)
        result += await sql.rows(f"SELECT {select + ', ' if select else ''}{measures} FROM {rollup.rows} i "
                                 f"WHERE {where}{group_by}")
    return [{k: (int(v or 0) if k in sums else v) for k, v in row.items()} for row in result]
