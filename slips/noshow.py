"""No-shows: a slip past its expiry moves its referral to `expired`, which frees the booked bed; the notify job
that every transition writes tells the referrer and the patient. Run by the ``slip.expire`` timer job."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from tortoise.transactions import in_transaction

from models import Referral, Slip, SlipState
from referrals import commands
from referrals.state_machine import Status
from timeutil import utcnow


class Outcome(StrEnum):
    EXPIRED = "expired"  # the referral moved to expired, the slip with it
    NOT_DUE = "not_due"  # the timer fired early (clock skew): try again later
    NOTHING = "nothing"  # the patient came, the slip was revoked or reissued, or it is already done


async def expire_if_due(slip_id: int, *, now: datetime | None = None) -> Outcome:
    """Expire the slip's referral if the slip is still active and past its expiry. Safe to run any number of
    times; a concurrent check-in wins or loses on the referral's version, never both."""
    slip = await Slip.get_or_none(id=slip_id)
    if slip is None or slip.state != SlipState.ACTIVE:
        return Outcome.NOTHING
    if slip.expires_at > (now or utcnow()):
        return Outcome.NOT_DUE
    referral = await Referral.get(id=slip.referral_id)  # type: ignore[attr-defined]
    if referral.status != Status.SCHEDULED:
        return Outcome.NOTHING  # admitted or closed by another path; the slip's view follows the referral
    async with in_transaction():
        await commands.expire(referral.id)  # raises Conflict when a check-in got there first
        await Slip.filter(id=slip.id, state=SlipState.ACTIVE).update(state=SlipState.EXPIRED)
    return Outcome.EXPIRED
