"""Outbox job handlers of the slips package (registered on import; the API module imports this)."""

from __future__ import annotations

import logging

from errors import Conflict
from outbox.registry import JobContext, PermanentFailure, TemporaryFailure, handler
from slips.lifecycle import EXPIRE_JOB
from slips.noshow import Outcome, expire_if_due

log = logging.getLogger("referral_cloud.slips")


@handler(EXPIRE_JOB)
async def expire_slip(ctx: JobContext) -> None:
    """``slip.expire`` {slip_id}, due at the slip's expiry: the no-show check."""
    try:
        slip_id = int(ctx.job.payload["slip_id"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("slip.expire payload has no slip_id") from None
    try:
        outcome = await expire_if_due(slip_id)
    except Conflict as exc:
        # A check-in or cancellation raced the timer; the next attempt sees who won.
        raise TemporaryFailure(f"referral changed meanwhile ({exc.code})") from None
    if outcome is Outcome.NOT_DUE:
        raise TemporaryFailure("slip not yet expired")
    if outcome is Outcome.EXPIRED:
        log.info("slip %s expired: referral moved to expired", slip_id)
