"""The other figures of a period: referrals by status, rejection reasons, redirects, no-shows, approvals past
their deadline, reserved-bed use and consultations (stats/consults.py). Each section is a function returning one
table, so a new one is one more entry in SECTIONS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from directory import cache
from referrals.clinical import REJECTION_REASONS
from referrals.state_machine import STATUS_NAMES, Status
from stats import rollup
from stats.consults import consultations
from stats.query import Filters, Sql
from stats.report import COUNT, SHARE, TEXT, Column, Table, share


async def _status_rows(filters: Filters) -> list[dict]:
    """Per status and rejection reason, the counts every section adds up: whole months from the rollup
    (stats/rollup.py), cut months from the referral rows."""
    rows = await rollup.read(rollup.REFERRALS, filters, {"status": "i.status", "rejection_code": "i.rejection_code"},
                             ["n", "accepted", "redirected", "redirects", "decisions", "late_decisions",
                              "late_referrals"])
    merged: dict[tuple, dict] = {}
    for row in rows:
        total = merged.setdefault((row["status"], row["rejection_code"]), dict.fromkeys(row, 0) | {
            "status": row["status"], "rejection_code": row["rejection_code"]})
        for key, value in row.items():
            if key not in ("status", "rejection_code"):
                total[key] += value
    return list(merged.values())


def _flow(rows: list[dict]) -> dict:
    flow = {key: sum(r[key] for r in rows) for key in ("accepted", "redirected", "redirects", "decisions",
                                                         "late_decisions", "late_referrals")}
    return flow | {"submitted": sum(r["n"] for r in rows),
                   "no_shows": sum(r["n"] for r in rows if r["status"] == Status.EXPIRED)}


async def by_status(filters: Filters, rows: list[dict], flow: dict) -> Table:
    counts = {str(s): 0 for s in Status if s != Status.DRAFT}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + row["n"]
    total = sum(counts.values())
    return Table("按状态", [Column("status", "状态代码"), Column("name", "状态"), Column("n", "数量", COUNT),
                          Column("share", "占比", SHARE)],
                 [{"status": s, "name": STATUS_NAMES[Status(s)], "n": n, "share": share(n, total)}
                  for s, n in counts.items()])


async def rejections(filters: Filters, rows: list[dict], flow: dict) -> Table:
    counts = {code: 0 for code in REJECTION_REASONS}
    for row in rows:
        if row["status"] == Status.REJECTED:
            counts[row["rejection_code"] or "other"] = counts.get(row["rejection_code"] or "other", 0) + row["n"]
    total = sum(counts.values())
    return Table("拒绝原因", [Column("reason", "原因代码"), Column("name", "拒绝原因"), Column("n", "数量", COUNT),
                            Column("share", "占比", SHARE)],
                 [{"reason": code, "name": REJECTION_REASONS.get(code, code), "n": n, "share": share(n, total)}
                  for code, n in counts.items()])


async def flow_table(filters: Filters, rows: list[dict], flow: dict) -> Table:
    return Table("流程指标", [Column("name", "指标"), Column("n", "数量", COUNT), Column("of", "基数", COUNT),
                            Column("share", "比例", SHARE)], [
        {"key": "redirected", "name": "改转其他机构的转诊", "n": flow["redirected"], "of": flow["submitted"],
         "share": share(flow["redirected"], flow["submitted"])},
        {"key": "redirects", "name": "改转次数", "n": flow["redirects"], "of": None, "share": None},
        {"key": "no_shows", "name": "逾期未到院（爽约）", "n": flow["no_shows"], "of": flow["accepted"],
         "share": share(flow["no_shows"], flow["accepted"])},
        {"key": "late_decisions", "name": "超过审批时限的审批", "n": flow["late_decisions"], "of": flow["decisions"],
         "share": share(flow["late_decisions"], flow["decisions"])},
        {"key": "late_referrals", "name": "有超时审批的转诊", "n": flow["late_referrals"], "of": flow["submitted"],
         "share": share(flow["late_referrals"], flow["submitted"])},
    ])


async def bed_use(filters: Filters, rows: list[dict], flow: dict) -> Table:
    """Reserved beds booked ÷ published, per institution, over the days of the range (of the admission day)."""
    sql = Sql()
    clauses = ["1 = 1"]
    if filters.start is not None:
        clauses.append(f"c.day >= {sql.p(filters.start)}")
    if filters.end is not None:
        clauses.append(f"c.day <= {sql.p(filters.end)}")
    for institution in (filters.scope, filters.institution_id):
        if institution is not None:
            clauses.append(f"d.institution_id = {sql.p(institution)}")
    if filters.department_id is not None:
        clauses.append(f"c.department_id = {sql.p(filters.department_id)}")
    result = await sql.rows(
        "SELECT d.institution_id AS institution_id, SUM(c.capacity) AS published, SUM(c.booked) AS booked "
        f"FROM capacity_day c JOIN department d ON d.id = c.department_id WHERE {' AND '.join(clauses)} "
        "GROUP BY d.institution_id ORDER BY d.institution_id")
    table_rows = [{"institution": (await cache.institution(r["institution_id"])).name,
                   "published": int(r["published"] or 0), "booked": int(r["booked"] or 0),
                   "share": share(int(r["booked"] or 0), int(r["published"] or 0))} for r in result]
    published, booked = sum(r["published"] for r in table_rows), sum(r["booked"] for r in table_rows)
    table_rows.append({"institution": "合计", "published": published, "booked": booked,
                       "share": share(booked, published)})
    return Table("预留床位使用", [Column("institution", "机构", TEXT), Column("published", "预留床位", COUNT),
                              Column("booked", "已预约", COUNT), Column("share", "使用率", SHARE)], table_rows)


Section = Callable[[Filters, list[dict], dict], Awaitable[Table]]
SECTIONS: dict[str, Section] = {"by_status": by_status, "rejections": rejections, "flow": flow_table,
                                "bed_use": bed_use, "consultations": consultations}


async def summary(filters: Filters) -> dict[str, Table]:
    rows = await _status_rows(filters)
    flow = _flow(rows)
    return {name: await section(filters, rows, flow) for name, section in SECTIONS.items()}
