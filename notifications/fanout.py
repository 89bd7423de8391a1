"""Writing a notice out: an inbox message per account and, for an account that holds a subscription credit for
the notice's template (or a long-term subscription), one delivery job; in the caller's transaction, both
deduplicated, so running the same fan-out twice adds nothing. An account without a credit gets the inbox row
only: WeChat would refuse the message, and a job to find that out costs a job and its statements."""

from __future__ import annotations

from collections.abc import Sequence

from tortoise.expressions import Q

from models import InboxMessage, Referral, SubscriptionCredit
from notifications.rules import Notice
from notifications.templates import TEMPLATES, render, template_id
from outbox.jobs import NewJob, enqueue_all
from settings import Settings

SEND_KIND = "notify.send"


def send_dedupe_key(event_key: str, account_id: int, channel: str = "subscribe") -> str:
    """One job per referral event, recipient and channel: a failing recipient never resends to the others."""
    return f"notify:{event_key}:to:{account_id}:{channel}"


async def publish(notice: Notice, referral: Referral | None, event_key: str, *, settings: Settings) -> int:
    """Put `notice` in every recipient's inbox and queue its WeChat delivery to those who may receive it;
    returns the recipients."""
    return await publish_all([notice], referral, event_key, settings=settings)


async def subscribed(pairs: set[tuple[int, str]]) -> set[tuple[int, str]]:
    """Of (account id, template id) pairs, those with a send available now (a credit or a long-term
    subscription, not banned): one SELECT for a whole event. The send job still spends the credit under its
    own conditional UPDATE, so one taken meanwhile still ends as "no credit" there."""
    if not pairs:
        return set()
    rows = await SubscriptionCredit.filter(
        Q(credits__gt=0) | Q(long_term=True), account_id__in=sorted({a for a, _ in pairs}),
        template_id__in=sorted({t for _, t in pairs}), banned=False).values_list("account_id", "template_id")
    return {(account_id, tid) for account_id, tid in rows} & pairs


async def publish_all(notices: Sequence[Notice], referral: Referral | None, event_key: str,
                      jobs: Sequence[NewJob] = (), *, settings: Settings) -> int:
    """The notices of one event (an account is in one of them at most) and any other `jobs` it calls for:
    one SELECT for the recipients' credits, then the inbox messages and the jobs in one statement on PostgreSQL
    (one INSERT for the messages and one for the jobs elsewhere).
    Returns the recipients."""
    wanted = {(account_id, template_id(settings, notice.template))
              for notice in notices for account_id in notice.accounts}
    may_send = await subscribed(wanted)
    inbox, sends = [], []
    for notice in notices:
        data = render(TEMPLATES[notice.template], notice.values)
        tid = template_id(settings, notice.template)
        for account_id in notice.accounts:
            inbox.append(InboxMessage(
                dedupe_key=f"inbox:{event_key}:{account_id}", account_id=account_id, kind=notice.kind,
                title=notice.title[:100], body=notice.body, page=notice.page, data=data,
                referral_id=referral.id if referral else None))
            if (account_id, tid) in may_send:
                sends.append(NewJob(SEND_KIND, {"account_id": account_id, "template": notice.template,
                                                "data": data, "page": notice.page, "kind": notice.kind},
                                    send_dedupe_key(event_key, account_id)))
    # A message or job a first run already wrote is left as it is.
    await enqueue_all([*sends, *jobs], along=inbox)
    return len(inbox)
