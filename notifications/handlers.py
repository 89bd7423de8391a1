"""The notification job handlers (registered on import; `notifications.setup` imports this module).

* `notify.referral_event` {referral_id, seq, action}: written by every referral transition. Decides who is told
  what (`notifications.rules`), writes their inbox messages, one `notify.send` job per recipient who holds a
  subscription credit for the template, the timers the new state calls for, and the satisfaction surveys of an
  admission or completion, in one transaction.
* `notify.send` {account_id, template, data, page, kind}: one subscribe message to one account.
* `notify.timer` {referral_id, seq, status, timer}: approval overdue, escalation, the day before admission.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

from tortoise.transactions import in_transaction

from appkeys import SETTINGS
from models import Referral, ReferralEvent, joined
from notifications import delivery, reminders, rules
from notifications.fanout import SEND_KIND, publish_all
from outbox.registry import JobContext, handler
from sql_batch import is_postgres
from surveys.invitations import invite_for_event, invites_on

log = logging.getLogger("referral_cloud.notifications")


@handler("notify.referral_event")
async def referral_event(ctx: JobContext) -> None:
    payload = ctx.job.payload
    # The event with its referral, in one query.
    event = await ReferralEvent.get_or_none(referral_id=payload["referral_id"],
                                            seq=payload["seq"]).select_related("referral")
    referral = joined(event, "referral", Referral) if event is not None else None
    if referral is None or event is None:
        log.warning("notify.referral_event for a missing referral event %s/%s", payload.get("referral_id"),
                    payload.get("seq"))
        return
    facts = await rules.Facts.of(referral)
    notices = await rules.for_event(facts, event)
    timers = await reminders.timers(referral, event)
    # Without surveys to write, the fan-out is one statement on PostgreSQL (notifications.fanout): atomic
    # alone, so BEGIN and COMMIT would only add two round trips.
    alone = is_postgres() and not invites_on(event)
    async with nullcontext() if alone else in_transaction():
        # The key is the event's: an account is in one notice of an event at most (rules.for_event).
        await publish_all(notices, referral, f"{referral.id}:{event.seq}", timers, settings=ctx.app[SETTINGS])
        # Admission and completion also ask the people involved how satisfied they are (surveys/).
        await invite_for_event(referral, event, ctx.app[SETTINGS])


@handler(SEND_KIND)
async def send(ctx: JobContext) -> None:
    await delivery.send_subscribe(ctx)


@handler(reminders.TIMER_KIND)
async def timer(ctx: JobContext) -> None:
    async with in_transaction():
        await reminders.fire(ctx.job.payload, ctx.app[SETTINGS])
