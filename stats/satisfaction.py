"""The paper's Table 2, live: per respondent (patient, doctor) and period, invitations, answers, response
rate, the satisfied share (满意 + 非常满意 on the overall item) and each item's mean. A group with fewer than
MIN_ANSWERS answers shows no figures (too few to mean anything, and too close to the individual)."""

from __future__ import annotations

from models import SurveyForm
from models.surveys import MAX_ITEMS
from stats.query import Filters, Sql
from stats.report import COUNT, SCORE, SHARE, TEXT, Column, Table
from stats.summary import share
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


async def satisfaction(filters: Filters, period: str) -> list[dict]:
    expr = PERIODS[period]
    sql = Sql()
    where = " AND ".join(filters.where(sql, day="invited_day", alias="i"))
    invited = await sql.rows(f"SELECT i.respondent AS respondent, {expr} AS period, COUNT(*) AS invitations, "
                             f"COUNT(i.answered_at) AS answered FROM survey_invitation i WHERE {where} "
                             f"GROUP BY i.respondent, {expr}")
    sql = Sql()
    where = " AND ".join(filters.where(sql, day="invited_day", alias="i"))
    items = ", ".join(f"SUM(r.s{n}) AS sum{n}, COUNT(r.s{n}) AS n{n}" for n in range(1, MAX_ITEMS + 1))
    answered = await sql.rows(
        f"SELECT i.respondent AS respondent, {expr} AS period, r.form_id AS form_id, COUNT(*) AS answers, "
        f"SUM(CASE WHEN r.satisfied THEN 1 ELSE 0 END) AS satisfied, {items} "
        f"FROM survey_response r JOIN survey_invitation i ON i.id = r.invitation_id WHERE {where} "
        f"GROUP BY i.respondent, {expr}, r.form_id")
    forms = {f.id: f for f in await SurveyForm.filter(id__in={r["form_id"] for r in answered})}
    groups: dict[tuple, dict] = {}
    for row in invited:
        groups[(row["respondent"], int(row["period"]))] = {
            "invitations": int(row["invitations"]), "answers": 0, "satisfied": 0, "items": {}}
    for row in answered:
        group = groups.setdefault((row["respondent"], int(row["period"])),
                                  {"invitations": 0, "answers": 0, "satisfied": 0, "items": {}})
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
