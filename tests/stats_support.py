"""Brute-force figures for the stats tests: every figure recomputed in plain Python from the rows (referrals,
capacity days, survey invitations and answers), with nothing taken from the figure columns the transitions
write except where the row has no other source. The stats module must agree with these exactly."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

from models import CapacityDay, Department, Referral, SurveyForm, SurveyInvitation, SurveyResponse
from stats.query import Filters
from timeutil import china_time

FIELDS = ("id", "status", "direction", "source_institution_id", "target_institution_id", "source_department_id",
          "target_department_id", "submitted_at", "source_approved_at", "decided_at", "admitted_at",
          "rejection_code", "redirects", "decisions", "late_decisions")
DAY = 86400


def seconds(start, end) -> int:
    return int((end - start).total_seconds())


def quantile(values: list[int], num: int, den: int) -> float:
    """Linear interpolation between the ranked values around (n - 1)·p (PostgreSQL's percentile_cont)."""
    ordered = sorted(values)
    k, rest = divmod((len(ordered) - 1) * num, den)
    low = ordered[k]
    high = ordered[min(k + 1, len(ordered) - 1)]
    return low + (high - low) * (rest / den)


def figure(values: list[int]) -> dict:
    if not values:
        return {"n": 0, "mean_days": None, "median_days": None, "p90_days": None}
    return {"n": len(values), "mean_days": round(sum(values) / len(values) / DAY, 2),
            "median_days": round(quantile(values, 1, 2) / DAY, 2), "p90_days": round(quantile(values, 9, 10) / DAY, 2)}


def china_day(at) -> date:
    return china_time(at).date()


def month(day: date) -> int:
    return day.year * 100 + day.month


def quarter(day: date) -> int:
    return day.year * 10 + (day.month + 2) // 3


def stages(r: dict) -> dict[str, int | None]:
    """Each stage's length from the row's timestamps."""
    accepted = r["decided_at"] is not None and r["status"] != "rejected"
    return {
        "total": seconds(r["submitted_at"], r["admitted_at"]) if r["admitted_at"] else None,
        "source_approval": seconds(r["submitted_at"], r["source_approved_at"]) if r["source_approved_at"] else None,
        "target_approval": (seconds(r["source_approved_at"] or r["submitted_at"], r["decided_at"])
                            if accepted else None),
        "bed": seconds(r["decided_at"], r["admitted_at"]) if r["admitted_at"] else None,
    }


def matches(r: dict, f: Filters) -> bool:
    """A referral inside the filters: submitted on a China day of the range, and at the right place."""
    if r["submitted_at"] is None:
        return False
    day = china_day(r["submitted_at"])
    return not ((f.start and day < f.start) or (f.end and day > f.end)) and at_place(r, f)


def at_place(r: dict, f: Filters) -> bool:
    if f.direction and r["direction"] != f.direction:
        return False
    for institution in (f.scope, f.institution_id):
        if institution is not None and institution not in (r["source_institution_id"], r["target_institution_id"]):
            return False
    return f.department_id is None or f.department_id in (r["source_department_id"], r["target_department_id"])


def group_key(r: dict, group: str):
    day = china_day(r["submitted_at"])
    return {"direction": r["direction"], "month": month(day), "quarter": quarter(day),
            "source_institution": r["source_institution_id"], "target_institution": r["target_institution_id"],
            "source_department": r["source_department_id"], "target_department": r["target_department_id"]}[group]


async def referral_rows() -> list[dict]:
    rows = await Referral.all().values(*FIELDS)
    for r in rows:
        r["direction"], r["status"] = str(r["direction"]), str(r["status"])
    return rows


async def brute_waiting(filters: Filters, group_by: list[str]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in await referral_rows():
        if matches(r, filters):
            groups[tuple(group_key(r, g) for g in group_by)].append(r)
    result = []
    for key, rows in groups.items():
        lengths = [stages(r) for r in rows]
        result.append({"key": dict(zip(group_by, key, strict=True)), "submitted": len(rows),
                       **{s: figure([x[s] for x in lengths if x[s] is not None])
                          for s in ("total", "source_approval", "target_approval", "bed")}})
    result.sort(key=lambda item: tuple(str(item["key"][g]) for g in group_by))
    return result


async def brute_summary(filters: Filters) -> dict:
    rows = [r for r in await referral_rows() if matches(r, filters)]
    status: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    for r in rows:
        status[r["status"]] += 1
        if r["status"] == "rejected":
            reasons[r["rejection_code"] or "other"] += 1
    accepted = sum(1 for r in rows if stages(r)["target_approval"] is not None)
    flow = {"redirected": sum(1 for r in rows if r["redirects"]), "redirects": sum(r["redirects"] for r in rows),
            "no_shows": sum(1 for r in rows if r["status"] == "expired"), "accepted": accepted,
            "decisions": sum(r["decisions"] for r in rows), "late_decisions": sum(r["late_decisions"] for r in rows),
            "late_referrals": sum(1 for r in rows if r["late_decisions"]), "submitted": len(rows)}
    departments = {d.id: d.institution_id for d in await Department.all()}  # type: ignore[attr-defined]
    beds: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for c in await CapacityDay.all():
        institution = departments[c.department_id]  # type: ignore[attr-defined]
        if (filters.start and c.day < filters.start) or (filters.end and c.day > filters.end):
            continue
        if any(i is not None and i != institution for i in (filters.scope, filters.institution_id)):
            continue
        if filters.department_id is not None and c.department_id != filters.department_id:  # type: ignore[attr-defined]
            continue
        beds[institution][0] += c.capacity
        beds[institution][1] += c.booked
    return {"status": dict(status), "reasons": dict(reasons), "flow": flow, "beds": dict(beds)}


async def brute_satisfaction(filters: Filters, period: str) -> dict[tuple, dict]:
    forms = {f.id: f for f in await SurveyForm.all()}
    answers = {a.invitation_id: a for a in await SurveyResponse.all()}  # type: ignore[attr-defined]
    groups: dict[tuple, dict] = {}
    for i in await SurveyInvitation.all():
        r = {"direction": i.direction, "source_institution_id": i.source_institution_id,
             "target_institution_id": i.target_institution_id, "source_department_id": i.source_department_id,
             "target_department_id": i.target_department_id}
        day = i.invited_day
        if (filters.start and day < filters.start) or (filters.end and day > filters.end):
            continue
        if not at_place(r, filters):
            continue
        key = (i.respondent, {"all": 0, "month": month(day), "quarter": quarter(day)}[period])
        group = groups.setdefault(key, {"invitations": 0, "answers": 0, "satisfied": 0, "scores": defaultdict(list)})
        group["invitations"] += 1
        answer = answers.get(i.id)
        if answer is None:
            continue
        group["answers"] += 1
        scores = [getattr(answer, f"s{n}") for n in range(1, 9)]
        group["satisfied"] += scores[0] >= 4
        for item, score in zip(forms[answer.form_id].items, scores, strict=False):  # type: ignore[attr-defined]
            if score is not None:
                group["scores"][item["key"]].append(score)
    return groups
