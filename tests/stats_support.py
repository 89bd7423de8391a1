"""Brute-force figures for the stats tests: every figure recomputed in plain Python from the rows (referrals,
capacity days, survey invitations and answers), with nothing taken from the figure columns the transitions
write except where the row has no other source. The stats module must agree with these exactly."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date

from models import (
    CapacityDay,
    ChatMessage,
    Consultation,
    Conversation,
    Department,
    Institution,
    Referral,
    ReferralMonth,
    Staff,
    SurveyForm,
    SurveyInvitation,
    SurveyMonth,
    SurveyResponse,
)
from referrals.state_machine import direction_of
from stats import rollup
from stats.consults import consultations
from stats.query import Filters
from stats.satisfaction import period_label, satisfaction
from stats.summary import summary
from stats.table1 import table1
from stats.waiting import waiting_times
from timeutil import china_time

FIELDS = ("id", "status", "direction", "source_institution_id", "target_institution_id", "source_department_id",
          "target_department_id", "submitted_at", "source_approved_at", "decided_at", "admitted_at",
          "rejection_code", "redirects", "decisions", "late_decisions")
DAY = 86400
GROUPINGS = [[], ["direction"], ["month"], ["quarter"], ["source_institution"], ["target_department"],
             ["direction", "quarter"]]


def seconds(start, end) -> int:
    return int((end - start).total_seconds())


def quantile(values: list[int], p: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the ranked values around p·(n - 1)."""
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    low, high = ordered[math.floor(position)], ordered[math.ceil(position)]
    return low + (high - low) * (position - math.floor(position))


def figure(values: list[int]) -> dict:
    if not values:
        return {"n": 0, "mean_days": None, "median_days": None, "p90_days": None}
    return {"n": len(values), "mean_days": round(sum(values) / len(values) / DAY, 2),
            "median_days": round(quantile(values, 0.5) / DAY, 2), "p90_days": round(quantile(values, 0.9) / DAY, 2)}


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


def _flat_summary(tables: dict) -> dict:
    return {"status": {r["status"]: r["n"] for r in tables["by_status"].rows if r["n"]},
            "reasons": {r["reason"]: r["n"] for r in tables["rejections"].rows if r["n"]},
            "flow": {r["key"]: r["n"] for r in tables["flow"].rows},
            "beds": {r["institution"]: [r["published"], r["booked"]] for r in tables["bed_use"].rows
                     if r["institution"] != "合计"}}


def timing(values: list[int]) -> tuple:
    """(n, mean, median, p90) in hours to two decimals."""
    if not values:
        return (len(values), None, None, None)
    return (len(values), round(sum(values) / len(values) / 3600, 2), round(quantile(values, 0.5) / 3600, 2),
            round(quantile(values, 0.9) / 3600, 2))


async def brute_consultations(filters: Filters) -> dict[str, tuple]:
    """Per figure of the consultation section, (n, of, mean, median, p90 hours), from the rows: the China day
    of the request, the requesting and addressed institutions and departments, the chat messages and the
    referrals made from each consultation."""
    levels = {i.id: i.level for i in await Institution.all()}
    departments = dict(await Staff.all().values_list("id", "department_id"))
    conversations = dict(await Conversation.filter(kind="consultation").values_list("subject_id", "id"))
    replies: dict[tuple[int, int], list] = defaultdict(list)
    for conversation_id, sender_id, at in await ChatMessage.all().values_list("conversation_id", "sender_id",
                                                                              "created_at"):
        replies[(conversation_id, sender_id)].append(at)
    referred = {r for r, at in await Referral.all().values_list("consultation_id", "submitted_at") if at}
    rows = []
    for c in await Consultation.all():
        day = china_day(c.created_at)
        source, target = c.requester_institution_id, c.target_institution_id  # type: ignore[attr-defined]
        if (filters.start and day < filters.start) or (filters.end and day > filters.end):
            continue
        if any(i is not None and i not in (source, target) for i in (filters.scope, filters.institution_id)):
            continue
        if filters.department_id not in (None, departments[c.requester_id],  # type: ignore[attr-defined]
                                         c.target_department_id):  # type: ignore[attr-defined]
            continue
        if filters.direction and direction_of(levels[source], levels[target]) != filters.direction:
            continue
        conversation = conversations.get(c.public_id)
        times = [at for (v, sender), ats in replies.items() if v == conversation
                 and sender != c.requester_id for at in ats]  # type: ignore[attr-defined]
        rows.append((c, seconds(c.created_at, min(times)) if times else None,
                     seconds(c.created_at, c.accepted_at) if c.accepted_at else None))
    total = len(rows)
    figures = {"requested": (total, None, None, None, None)}
    for status in ("requested", "accepted", "concluded", "declined", "cancelled", "expired"):
        figures[f"status.{status}"] = (sum(1 for c, _, _ in rows if c.status == status), total, None, None, None)
    concluded = [c for c, _, _ in rows if c.status == "concluded"]
    up = [c for c in concluded if (c.opinion or {}).get("recommendation") == "refer_up"]
    figures["refer_up_referred"] = (sum(1 for c in up if c.id in referred), len(up), None, None, None)
    figures["concluded_referred"] = (sum(1 for c in concluded if c.id in referred), len(concluded), None, None, None)
    n, *rest = timing([reply for _, reply, _ in rows if reply is not None])
    figures["first_reply"] = (n, total, *rest)
    n, *rest = timing([accept for _, _, accept in rows if accept is not None])
    figures["acceptance"] = (n, total, *rest)
    return figures


async def compare_consultations(filters: Filters) -> None:
    table = await consultations(filters, [], {})
    got = {r["key"]: (r["n"], r["of"], r.get("mean"), r.get("median"), r.get("p90")) for r in table.rows}
    brute = await brute_consultations(filters)
    assert got == brute, (filters, {k: (v, brute[k]) for k, v in got.items() if v != brute[k]})


async def compare_everything(filters: Filters) -> None:
    """Every figure the stats module gives for `filters` against the brute force (asserts)."""
    for group_by in GROUPINGS:
        figures = [{k: item[k] for k in ("key", "submitted", "total", "source_approval", "target_approval", "bed")}
                   for item in await waiting_times(filters, group_by)]
        assert figures == await brute_waiting(filters, group_by), (filters, group_by)
    assert await rollup_rows(ReferralMonth, rollup.REFERRALS) == await brute_referral_rollup()
    brute = await brute_summary(filters)
    names = {i.id: i.name for i in await Institution.all()}
    flat = _flat_summary(await summary(filters))
    assert flat["status"] == brute["status"] and flat["reasons"] == brute["reasons"], filters
    assert {k: v for k, v in brute["flow"].items() if k in flat["flow"]} == flat["flow"], filters
    assert flat["beds"] == {names[i]: v for i, v in brute["beds"].items()}, filters
    await compare_consultations(filters)
    for row in await table1(filters):
        expected = (await brute_waiting(Filters(filters.start, filters.end, row["direction"], filters.institution_id,
                                                filters.department_id, filters.scope), []))
        total = expected[0]["total"] if expected else {"n": 0, "mean_days": None}
        if filters.direction in (None, row["direction"]):
            assert row["platform"] == {"n": total["n"], "mean_days": total["mean_days"]}, (filters, row)
    await compare_satisfaction(filters)


async def compare_satisfaction(filters: Filters) -> None:
    """Table 2 for `filters` against the brute force over the invitations and answers, and the monthly rollup it
    reads against the same rows (asserts)."""
    assert await rollup_rows() == await brute_rollup()
    for period in ("all", "month", "quarter"):
        groups = await brute_satisfaction(filters, period)
        rows = await satisfaction(filters, period)
        assert len(rows) == len(groups)
        for row in rows:
            [group] = [g for (respondent, _), g in groups.items() if respondent == row["respondent"]
                       and period_label(period, _) == row["period"]]
            assert (row["invitations"], row["answers"]) == (group["invitations"], group["answers"])
            if group["answers"] < 5:
                assert row["suppressed"] and row["satisfied_share"] is None and row["items"] == []
                continue
            assert row["satisfied_share"] == round(group["satisfied"] / group["answers"], 4)
            assert row["response_rate"] == round(group["answers"] / group["invitations"], 4)
            assert {i["key"]: i["mean"] for i in row["items"]} == {
                k: round(sum(v) / len(v), 2) for k, v in group["scores"].items()}


async def rollup_rows(model=SurveyMonth, spec=rollup.SURVEYS) -> dict[tuple, dict]:
    return {tuple(r[k] for k in spec.key): {k: r[k] for k in spec.sums}
            for r in await model.all().values(*spec.key, *spec.sums) if any(r[k] for k in spec.sums)}


async def brute_rollup() -> dict[tuple, dict]:
    """survey_month as it should be: per month and place, the invitations and their answers (from the answer
    rows, not the copy on the invitation)."""
    answers = {a.invitation_id: a for a in await SurveyResponse.all()}  # type: ignore[attr-defined]
    groups: dict[tuple, dict] = {}
    for i in await SurveyInvitation.all():
        key = (i.invited_month, i.respondent, i.form_id, i.direction, i.source_institution_id,  # type: ignore[attr-defined]
               i.target_institution_id, i.source_department_id or 0, i.target_department_id or 0)
        group = groups.setdefault(key, dict.fromkeys(rollup.SURVEYS.sums, 0))
        group["invitations"] += 1
        answer = answers.get(i.id)
        if answer is None:
            continue
        group["answers"] += 1
        group["satisfied"] += int(answer.satisfied)
        for n in range(1, 9):
            score = getattr(answer, f"s{n}")
            group[f"sum{n}"] += score or 0
            group[f"n{n}"] += score is not None
    return groups


async def brute_referral_rollup() -> dict[tuple, dict]:
    """referral_month as it should be: per month of submission, place, status and reason, the submitted
    referrals and their counters."""
    groups: dict[tuple, dict] = {}
    for r in await referral_rows():
        if r["submitted_at"] is None:
            continue
        key = (month(china_day(r["submitted_at"])), r["direction"], r["source_institution_id"],
               r["target_institution_id"], r["source_department_id"] or 0, r["target_department_id"] or 0,
               r["status"], r["rejection_code"])
        group = groups.setdefault(key, dict.fromkeys(rollup.REFERRALS.sums, 0))
        lengths = stages(r)
        group["n"] += 1
        group["accepted"] += lengths["target_approval"] is not None
        group["redirected"] += r["redirects"] > 0
        group["redirects"] += r["redirects"]
        group["decisions"] += r["decisions"]
        group["late_decisions"] += r["late_decisions"]
        group["late_referrals"] += r["late_decisions"] > 0
        group["n_total"] += lengths["total"] is not None
        group["sum_total"] += lengths["total"] or 0
    return groups
