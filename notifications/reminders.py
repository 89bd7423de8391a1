"""Timers as outbox jobs (they survive restarts): the approval deadline and twice the deadline of a pending
referral, and the day before a scheduled admission. A timer is written when its referral enters the state,
with the event that led there; when it fires it does nothing if a transition has happened since."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from models import Referral, ReferralEvent
from notifications import recipients
from notifications.fanout import publish
from notifications.rules import (
    PENDING,
    Facts,
    admission,
    awaiting,
    moved_on,
    responsible_institution,
    stage_deadline,
)
from outbox.jobs import NewJob
from referrals.state_machine import Status
from settings import Settings
from timeutil import CHINA_TZ, utcnow

TIMER_KIND = "notify.timer"
OVERDUE, ESCALATE, EVE = "overdue", "escalate", "eve"
EVE_AT = time(9, 0)  # the day-before reminder goes out at 09:00 China time


def _timer_key(referral_id: int, seq: int, timer: str) -> str:
    return f"timer:{referral_id}:{seq}:{timer}"


async def timers(referral: Referral, event: ReferralEvent, now: datetime | None = None) -> list[NewJob]:
    """The timer jobs that the state `event` led to calls for (the caller writes them, with the event's
    notices: see notifications.handlers)."""
    if await moved_on(referral, event.seq):
        return []  # the referral moved on before we got here: its later event schedules what it needs
    now = now or utcnow()
    jobs: list[NewJob] = []
    payload = {"referral_id": referral.id, "seq": event.seq}
    if referral.status in PENDING and referral.stage_started_at is not None:
        due = await stage_deadline(referral)
        assert due is not None
        escalate_at = due + (due - referral.stage_started_at)
        for timer, run_at in ((OVERDUE, due), (ESCALATE, escalate_at)):
            jobs.append(NewJob(TIMER_KIND, payload | {"timer": timer, "status": str(referral.status)},
                                  _timer_key(referral.id, event.seq, timer), run_at=run_at.astimezone(UTC)))
    elif referral.status == Status.SCHEDULED and referral.admission_date is not None:
        eve = datetime.combine(referral.admission_date - timedelta(days=1), EVE_AT, CHINA_TZ)
        # Accepted after the reminder's hour on the day before (or later): the acceptance notice says it all.
        if eve > now:
            # In UTC: SQLite compares stored times as text, so every time in the column must have one offset.
            jobs.append(NewJob(TIMER_KIND, payload | {"timer": EVE, "status": str(referral.status)},
                                  _timer_key(referral.id, event.seq, EVE), run_at=eve.astimezone(UTC)))
    return jobs


async def fire(payload: dict, settings: Settings) -> int:
    """The `notify.timer` job: tell whoever the timer is for, if the referral is still where it was."""
    referral = await Referral.get_or_none(id=payload["referral_id"])
    if referral is None or str(referral.status) != payload["status"] or await moved_on(referral, payload["seq"]):
        return 0
    timer = payload["timer"]
    facts = await Facts.of(referral)
    if timer == EVE:
        if referral.status != Status.SCHEDULED:
            return 0
        notice = await admission(facts, None, eve=True)
        notice.accounts = await recipients.patient_accounts(referral)
    elif timer in (OVERDUE, ESCALATE) and referral.status in PENDING:
        notice = await awaiting(facts, stage="overdue" if timer == OVERDUE else "escalated")
        institution = responsible_institution(referral)
        notice.accounts = await (recipients.approver_accounts(institution) if timer == OVERDUE
                                 else recipients.admin_accounts(institution))
    else:
        return 0
    return await publish(notice, referral, f"{referral.id}:{payload['seq']}:{timer}", settings=settings)
