"""What a transition writes on the referral row for the figures: the China day and month of submission, the
length of each stage in whole seconds, redirects and decisions past the deadline. Each function returns the
changes for the transition's own UPDATE, so the figures cost no extra statement."""

from __future__ import annotations

from datetime import datetime

from models import Referral
from referrals.policy import deadline, policy_of
from referrals.state_machine import Status
from timeutil import china_time


def seconds_between(start: datetime, end: datetime) -> int:
    """Whole seconds from start to end (a stage's length as the figures count it)."""
    return int((end - start).total_seconds())


def month_of(day) -> int:
    return day.year * 100 + day.month


def submitted(now: datetime) -> dict:
    day = china_time(now).date()
    return {"submitted_day": day, "submitted_month": month_of(day)}


def source_approved(current: Referral, now: datetime) -> dict:
    return {"source_approved_at": now, "wait_source_s": seconds_between(current.submitted_at, now)}


def accepted(current: Referral, now: datetime) -> dict:
    start = current.source_approved_at or current.submitted_at
    return {"wait_target_s": seconds_between(start, now)}


def admitted(current: Referral, now: datetime) -> dict:
    return {"wait_bed_s": seconds_between(current.decided_at, now),
            "wait_total_s": seconds_between(current.submitted_at, now)}


async def decided(current: Referral, now: datetime) -> dict:
    """An approver's decision (approve, reject, redirect): counted, and counted late when it came after the
    deadline of the institution whose desk the referral was on."""
    responsible = (current.source_institution_id if current.status == Status.PENDING_SOURCE  # type: ignore[attr-defined]
                   else current.target_institution_id)  # type: ignore[attr-defined]
    late = (current.stage_started_at is not None
            and now > deadline(await policy_of(responsible), current.urgency, current.stage_started_at))
    return {"decisions": current.decisions + 1, "late_decisions": current.late_decisions + int(late)}
