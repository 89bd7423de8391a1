"""The paper's Table 2, live: per respondent (patient, doctor) and period, invitations, answers, response
rate, the satisfied share (满意 + 非常满意 on the overall item) and each item's mean. A group with fewer than
MIN_ANSWERS answers shows no figures (too few to mean anything, and too close to the individual)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from models import SurveyForm
from stats import rollup
from stats.facts import month_of
from stats.query import Filters, Sql
from stats.report import COUNT, SCORE, SHARE, TEXT, Column, Table, share
from surveys.forms import RESPONDENT_NAMES, RESPONDENTS

MIN_ANSWERS = 5
PERIODS = {"all": "(i.invited_month * 0)", "month": "i.invited_month",
           "quarter": "((i.invited_month / 100) * 10 + ((i.invited_month % 100) + 2) / 3)"}


def period_label(period: str, value: int) -> str:
    if period == "month":
        return f"{value // 100}-{value % 100:02d}"
    if period == "quarter":
        return f"{value // 10}年第{value % 10}季度"
    return "全部"


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


async def _rows(filters: Filters, period: str) -> list[dict]:
    """Per respondent, period and questionnaire: invitations, answers, satisfied and each item's sum and count.
    Whole months come from the rollup (stats/rollup.py), the days of a cut month from the invitation rows,
    which carry their answer's figures (one scan, no join)."""
    rows: list[dict] = []
    months, days = split_range(filters.start, filters.end)
    places = replace(filters, start=None, end=None)
    if months is not None:
        sql = Sql()
        clauses = places.where(sql, day="invited_month", alias="i")
        if months[0] is not None:
            clauses.append(f"i.invited_month >= {sql.p(months[0])}")
        if months[1] is not None:
            clauses.append(f"i.invited_month <= {sql.p(months[1])}")
        sums = ", ".join(f"SUM(i.{c}) AS {c}" for c in rollup.SUMS)
        rows += await sql.rows(f"SELECT i.respondent AS respondent, {PERIODS[period]} AS period, i.form_id AS form_id, "
                               f"{sums} FROM survey_month i WHERE {' AND '.join(clauses)} "
                               f"GROUP BY i.respondent, {PERIODS[period]}, i.form_id")
    for start, end in days:
        sql = Sql()
        where = " AND ".join(replace(places, start=start, end=end).where(sql, day="invited_day", alias="i"))
        sums = ", ".join(f"{expr} AS {c}" for expr, c in zip(rollup.ROW_SUMS, rollup.SUMS, strict=True))
        rows += await sql.rows(f"SELECT i.respondent AS respondent, {PERIODS[period]} AS period, i.form_id AS form_id, "
                               f"{sums} FROM survey_invitation i WHERE {where} "
                               f"GROUP BY i.respondent, {PERIODS[period]}, i.form_id")
    return rows


async def satisfaction(filters: Filters, period: str) -> list[dict]:
    rows = await _rows(filters, period)
    forms = {f.id: f for f in await SurveyForm.filter(id__in={r["form_id"] for r in rows if r["answers"]})}
    groups: dict[tuple, dict] = {}
    for row in rows:
        group = groups.setdefault((row["respondent"], int(row["period"])),
                                  {"invitations": 0, "answers": 0, "satisfied": 0, "items": {}})
        group["invitations"] += int(row["invitations"])
        if not row["answers"]:
            continue  # a questionnaire nobody answered here has no items to show
        group["answers"] += int(row["answers"])
        group["satisfied"] += int(row["satisfied"] or 0)
        for n, item in enumerate(forms[row["form_id"]].items, start=1):
            total = group["items"].setdefault(item["key"], {"text": item["text"], "sum": 0, "n": 0})
            total["sum"] += int(row[f"sum{n}"] or 0)
            total["n"] += int(row[f"n{n}"] or 0)
    result = []
    for (respondent, value), group in sorted(groups.items(), key=lambda kv: (RESPONDENTS.index(kv[0][0]), kv[0][1])):
        shown = group["answers"] >= MIN_ANSWERS
        result.append({
            "respondent": respondent, "respondent_name": RESPONDENT_NAMES[respondent],
            "period": period_label(period, value) if period != "all" else "全部",
            "invitations": group["invitations"], "answers": group["answers"], "suppressed": not shown,
            "response_rate": share(group["answers"], group["invitations"]) if shown else None,
            "satisfied_share": share(group["satisfied"], group["answers"]) if shown else None,
            "items": [{"key": key, "text": t["text"], "mean": round(t["sum"] / t["n"], 2) if t["n"] else None}
                      for key, t in group["items"].items()] if shown else []})
    return result


def satisfaction_tables(rows: list[dict]) -> list[Table]:
    main = Table("表2 满意度", [
        Column("respondent_name", "类别", TEXT), Column("period", "时期", TEXT),
        Column("invitations", "邀请数", COUNT), Column("answers", "答卷数", COUNT),
        Column("response_rate", "应答率", SHARE), Column("satisfied_share", "满意率(满意+非常满意)", SHARE)],
        [{k: r[k] for k in ("respondent_name", "period", "invitations", "answers", "response_rate",
                            "satisfied_share")} for r in rows])
    items = Table("各项平均分", [Column("respondent_name", "类别", TEXT), Column("period", "时期", TEXT),
                            Column("text", "评分项", TEXT), Column("mean", "平均分(1-5)", SCORE)],
                  [{"respondent_name": r["respondent_name"], "period": r["period"], "text": i["text"],
                    "mean": i["mean"]} for r in rows for i in r["items"]])
    return [main, items]
