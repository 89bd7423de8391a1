"""Subscription credits: how many subscribe messages each account may still receive per template.

A one-time template gives one send per accept; a template configured long-term (WECHAT_LONG_TERM_TEMPLATES)
gives any number after one accept. The same tap in `wx.requestSubscribeMessage` is reported twice, by the
mini-program (`POST /api/v1/subscriptions`) and by WeChat's `subscribe_msg_popup_event`; each report is
matched against an unmatched report of the other source for ten minutes, so one tap is one credit whichever
arrives first (and one report alone still counts). Spending is a conditional UPDATE, so two concurrent sends
never spend the same credit.
"""

from __future__ import annotations

import logging
from typing import Literal

from tortoise.expressions import F

from kv import KV
from models import SubscriptionCredit

log = logging.getLogger("referral_cloud.notifications")

Choice = Literal["accept", "reject", "ban", "filter"]
Source = Literal["app", "push"]
MATCH_WINDOW = 600.0


async def _row(account_id: int, template_id: str) -> SubscriptionCredit:
    row, _ = await SubscriptionCredit.get_or_create(account_id=account_id, template_id=template_id)
    return row


async def _unmatched_other(kv: KV, account_id: int, template_id: str, source: Source) -> bool:
    """Whether this report is the second report of one tap (and consume the first); else remember it."""
    other = "push" if source == "app" else "app"
    mine_key = f"subscription:unmatched:{source}:{account_id}:{template_id}"
    other_key = f"subscription:unmatched:{other}:{account_id}:{template_id}"
    async with kv.lock(f"subscription:{account_id}:{template_id}", timeout=10, wait=10):
        waiting = int(await kv.get(other_key) or 0)
        if waiting > 0:
            await kv.set(other_key, str(waiting - 1), ex=MATCH_WINDOW)
            return True
        mine = int(await kv.get(mine_key) or 0)
        await kv.set(mine_key, str(mine + 1), ex=MATCH_WINDOW)
        return False


async def record_choice(kv: KV, account_id: int, template_id: str, choice: str, *, source: Source,
                        long_term: bool) -> SubscriptionCredit:
    """What the user chose for one template in the subscription dialog."""
    row = await _row(account_id, template_id)
    if choice in ("accept", "acceptWithAudio"):
        if long_term:
            await SubscriptionCredit.filter(id=row.id).update(long_term=True, banned=False)
        elif await _unmatched_other(kv, account_id, template_id, source):
            log.debug("subscription accept reported by both app and push; counted once")
        else:
            await SubscriptionCredit.filter(id=row.id).update(credits=F("credits") + 1, banned=False)
    elif choice == "reject" and long_term:
        await SubscriptionCredit.filter(id=row.id).update(long_term=False)
    elif choice == "ban":
        # The template is banned for this user: nothing can be sent until a new accept.
        await SubscriptionCredit.filter(id=row.id).update(banned=True, credits=0, long_term=False)
    # A one-time "reject" or "filter" leaves earlier credits as they are: WeChat keeps them too.
    return await SubscriptionCredit.get(id=row.id)


async def switched_off(kv: KV, account_id: int, template_id: str) -> None:
    """The user turned the template off in WeChat's settings (subscribe_msg_change_event reject), or WeChat
    answered 43101: whatever we counted, WeChat will send nothing, and reports still waiting for their match
    are about taps from before."""
    await SubscriptionCredit.filter(account_id=account_id, template_id=template_id).update(credits=0,
                                                                                          long_term=False)
    for source in ("app", "push"):
        await kv.delete(f"subscription:unmatched:{source}:{account_id}:{template_id}")


async def spend(account_id: int, template_id: str) -> bool:
    """Take one send: free for a long-term subscription, else one credit if there is one."""
    row = await SubscriptionCredit.get_or_none(account_id=account_id, template_id=template_id)
    if row is None or row.banned:
        return False
    if row.long_term:
        return True
    taken = await SubscriptionCredit.filter(id=row.id, credits__gt=0, banned=False, long_term=False) \
        .update(credits=F("credits") - 1)
    return bool(taken)


async def refund(account_id: int, template_id: str) -> None:
    """Give back a credit WeChat did not use (it refused the message before sending it)."""
    await SubscriptionCredit.filter(account_id=account_id, template_id=template_id, long_term=False) \
        .update(credits=F("credits") + 1)


async def credits_of(account_id: int) -> list[SubscriptionCredit]:
    return await SubscriptionCredit.filter(account_id=account_id).order_by("template_id")
