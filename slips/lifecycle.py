"""Issuing and revoking slips, called by referral commands inside their transaction (so a slip exists exactly
when its referral is scheduled): issued on target acceptance, revoked on cancel or redirect, reissued when the
admission is rescheduled. Each issued slip also gets its no-show timer (an outbox job due at its expiry).

Nothing here imports referrals.commands: the commands import this module."""

from __future__ import annotations

import secrets
from datetime import date, datetime, time, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from errors import Conflict
from models import Referral, Slip, SlipState
from outbox.jobs import enqueue
from referrals.policy import bring_of, policy_of
from slips import keys
from timeutil import CHINA_TZ, utcnow

CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # as referral codes: no 0/O, 1/I, read aloud at a desk
CODE_PREFIX = "RY"  # 入院
EXPIRE_JOB = "slip.expire"

REVOKE_REASONS = {"cancelled": "转诊已取消", "redirected": "已改转其他医院",
                  "rescheduled": "入院日期已变更，请使用新凭条"}


def new_code() -> str:
    """RY + 8 characters, e.g. RYK7QM3P2A: short enough to read aloud, too many to guess."""
    return CODE_PREFIX + "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def expiry_of(scheduled: date, grace_hours: int) -> datetime:
    """The end of the scheduled day in China, plus the institution's grace period."""
    day_end = datetime.combine(scheduled + timedelta(days=1), time.min, CHINA_TZ)
    return day_end + timedelta(hours=max(grace_hours, 0))


async def issue(referral: Referral) -> Slip:
    """A new active slip for a scheduled referral, and its no-show timer. Call inside the transaction."""
    if referral.admission_date is None:
        raise ValueError(f"referral {referral.code} is scheduled without an admission date")
    policy = await policy_of(referral.target_institution_id)  # type: ignore[attr-defined]
    expires_at = expiry_of(referral.admission_date, policy.slip_grace_hours)
    fields = {"referral_id": referral.id, "state": SlipState.ACTIVE, "kid": await keys.current_kid(),
              "scheduled_date": referral.admission_date,
              "department_id": referral.admission_department_id or referral.target_department_id,  # type: ignore[attr-defined]
              "ward": referral.ward, "bed": referral.bed,
              "what_to_bring": bring_of(policy),
              "certificate_no": referral.admission_certificate_no, "expires_at": expires_at}
    for _ in range(5):
        try:
            async with in_transaction():  # a savepoint: a code collision must not abort the caller's transaction
                slip = await Slip.create(code=new_code(), **fields)
            break
        except IntegrityError:
            continue
    else:
        raise Conflict("生成入院凭条编号失败，请重试", code="SLIP_CODE_COLLISION")
    await enqueue(EXPIRE_JOB, {"slip_id": slip.id}, dedupe_key=f"slip-expire:{slip.id}", run_at=expires_at)
    return slip


async def revoke(referral_id: int, reason: str) -> int:
    """Revoke the referral's active slips (cancel, redirect, reschedule); returns how many."""
    return await Slip.filter(referral_id=referral_id, state=SlipState.ACTIVE).update(
        state=SlipState.REVOKED, revoked_at=utcnow(), revoked_reason=reason)


async def reissue(referral: Referral) -> Slip:
    """The admission moved: the old slip is void, a new one carries the new date (and its own timer)."""
    await revoke(referral.id, "rescheduled")
    return await issue(referral)


async def current_slip(referral_id: int) -> Slip | None:
    """The slip the patient should hold: the newest one issued for the referral."""
    return await Slip.filter(referral_id=referral_id).order_by("-id").first()
