"""The paper's Table 2, live: per respondent (patient, doctor) and period, invitations, answers, response
rate, the satisfied share (满意 + 非常满意 on the overall item) and each item's mean. A group with fewer than
MIN_ANSWERS answers shows no figures (too few to mean anything, and too close to the individual)."""

from __future__ import annotations

from models import SurveyForm
from stats import rollup
from stats.query import Filters
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


async def satisfaction(filters: Filters, period: str) -> list[dict]:
    # Whole months from the rollup, cut months from the invitations, which carry their answer's figures.
    rows = await rollup.read(rollup.SURVEYS, filters, {"respondent": "i.respondent", "period": PERIODS[period],
                                                       "form_id": "i.form_id"}, list(rollup.SURVEYS.sums))
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
