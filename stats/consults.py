"""Consultation figures (issue 12, point 1): requests by state, consultation → referral conversion, and the time
from the request to the first expert reply and to acceptance.

A consultation is in a range by the China day it was requested (`created_at`), at a place when the requesting
or the addressed institution (or the requester's or the addressed department) is the one filtered on, and in a
direction by the levels of the requesting and the addressed institution (as a referral between them would be).
One scan brings each consultation's state, recommendation, whether a referral was submitted from it and its
times; counts, sums and quantiles (PostgreSQL's percentile_cont formula) are taken here, exactly."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from consults.state_machine import STATUS_NAMES, Status
from directory import cache
from referrals.state_machine import direction_of
from stats.query import Filters, Sql
from stats.report import COUNT, HOURS, SHARE, Column, Table, share
from stats.waiting import QUANTILES, percentile_cont
from timeutil import CHINA_TZ

HOUR = 3600


def _instant(value) -> datetime | None:
    """A timestamp from the row: asyncpg gives datetimes, SQLite the ISO text Tortoise stored."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def china_midnight(day: date) -> datetime:
    """The UTC instant a China day starts (in UTC: SQLite compares the ISO text Tortoise stored in UTC)."""
    return datetime.combine(day, time(), CHINA_TZ).astimezone(UTC)


def seconds_between(start: datetime, end: datetime | None) -> int | None:
    return None if end is None else int((end - start).total_seconds())


async def consultation_rows(filters: Filters) -> list[dict]:
    """The consultations inside the filters: state, recommendation, referred (a submitted referral was made
    from it), and the seconds from the request to the first expert reply and to acceptance."""
    sql = Sql()
    clauses = ["1 = 1"]
    if filters.start is not None:
        clauses.append(f"c.created_at >= {sql.p(china_midnight(filters.start))}")
    if filters.end is not None:
        clauses.append(f"c.created_at < {sql.p(china_midnight(filters.end + timedelta(days=1)))}")
    for institution in (filters.scope, filters.institution_id):
        if institution is not None:
            clauses.append(f"(c.requester_institution_id = {sql.p(institution)} "
                           f"OR c.target_institution_id = {sql.p(institution)})")
    if filters.department_id is not None:
        clauses.append(f"(s.department_id = {sql.p(filters.department_id)} "
                       f"OR c.target_department_id = {sql.p(filters.department_id)})")
    recommendation = ("c.opinion->>'recommendation'" if sql.postgres
                      else "json_extract(c.opinion, '$.recommendation')")
    # Only the requester and experts (the accepting one, invited ones) take part in a consultation's
    # conversation, so the first message by anyone but the requester is the first expert reply.
    rows = await sql.rows(
        f"SELECT c.status AS status, {recommendation} AS recommendation, c.created_at AS requested_at, "
        "c.accepted_at AS accepted_at, c.requester_institution_id AS source, c.target_institution_id AS target, "
        "(SELECT MIN(m.created_at) FROM conversation v JOIN chat_message m ON m.conversation_id = v.id "
        " WHERE v.kind = 'consultation' AND v.subject_id = c.public_id AND m.sender_id <> c.requester_id) "
        "AS replied_at, "
        "(SELECT COUNT(*) FROM referral r WHERE r.consultation_id = c.id AND r.submitted_at IS NOT NULL) "
        "AS referrals "
        f"FROM consultation c JOIN staff s ON s.id = c.requester_id WHERE {' AND '.join(clauses)}")
    result = []
    for row in rows:
        if filters.direction is not None:
            source, target = await cache.institution(row["source"]), await cache.institution(row["target"])
            if direction_of(source.level, target.level) != filters.direction:
                continue
        requested = _instant(row["requested_at"])
        result.append({"status": row["status"], "recommendation": row["recommendation"] or None,
                       "referred": bool(row["referrals"]),
                       "reply_s": seconds_between(requested, _instant(row["replied_at"])),
                       "accept_s": seconds_between(requested, _instant(row["accepted_at"]))})
    return result


def _timing(values: list[int]) -> dict:
    """n, mean, median and p90 in hours (two decimals)."""
    if not values:
        return {"n": 0, "mean_hours": None, "median_hours": None, "p90_hours": None}
    ranked = sorted(values)
    quantiles = {name: percentile_cont(ranked.__getitem__, len(ranked), p) for name, p in QUANTILES.items()}
    return {"n": len(ranked), "mean_hours": round(sum(ranked) / len(ranked) / HOUR, 2),
            "median_hours": round(quantiles["median"] / HOUR, 2), "p90_hours": round(quantiles["p90"] / HOUR, 2)}


def consultation_figures(rows: list[dict]) -> dict:
    """The figures of the consultation rows (pure, so the table and its tests share the definitions)."""
    concluded = [r for r in rows if r["status"] == Status.CONCLUDED]
    refer_up = [r for r in concluded if r["recommendation"] == "refer_up"]
    return {
        "requested": len(rows),
        "by_status": {str(s): sum(1 for r in rows if r["status"] == s) for s in Status},
        "concluded": len(concluded),
        "concluded_referred": sum(1 for r in concluded if r["referred"]),
        "refer_up": len(refer_up),
        "refer_up_referred": sum(1 for r in refer_up if r["referred"]),
        "first_reply": _timing([r["reply_s"] for r in rows if r["reply_s"] is not None]),
        "acceptance": _timing([r["accept_s"] for r in rows if r["accept_s"] is not None]),
    }


async def consultations(filters: Filters, rows: list[dict], flow: dict) -> Table:
    """The summary's consultation section: one table of counts, shares and timings."""
    f = consultation_figures(await consultation_rows(filters))
    total = f["requested"]
    table_rows = [{"key": "requested", "name": "会诊申请", "n": total, "of": None, "share": None}]
    table_rows += [{"key": f"status.{s}", "name": f"状态：{STATUS_NAMES[Status(s)]}", "n": n, "of": total,
                    "share": share(n, total)} for s, n in f["by_status"].items()]
    table_rows += [
        {"key": "refer_up_referred", "name": "“建议上转”会诊转化为转诊", "n": f["refer_up_referred"],
         "of": f["refer_up"], "share": share(f["refer_up_referred"], f["refer_up"])},
        {"key": "concluded_referred", "name": "已出具意见的会诊转化为转诊", "n": f["concluded_referred"],
         "of": f["concluded"], "share": share(f["concluded_referred"], f["concluded"])},
    ]
    for key, name in (("first_reply", "申请 → 专家首次回复"), ("acceptance", "申请 → 专家接诊")):
        timing = f[key]
        table_rows.append({"key": key, "name": name, "n": timing["n"], "of": total, "share": share(timing["n"], total),
                           "mean": timing["mean_hours"], "median": timing["median_hours"], "p90": timing["p90_hours"]})
    return Table("会诊", [Column("name", "指标"), Column("n", "数量", COUNT), Column("of", "基数", COUNT),
                        Column("share", "比例", SHARE), Column("mean", "平均(小时)", HOURS),
                        Column("median", "中位数(小时)", HOURS), Column("p90", "P90(小时)", HOURS)], table_rows)
