"""Writing a notice out: an inbox message per account and one delivery job per account and channel, in the
caller's transaction, both deduplicated, so running the same fan-out twice adds nothing."""

from __future__ import annotations

from collections.abc import Sequence

from models import InboxMessage, Referral
from notifications.rules import Notice
from notifications.templates import TEMPLATES, render
from outbox.jobs import NewJob, enqueue_all

SEND_KIND = "notify.send"


def send_dedupe_key(event_key: str, account_id: int, channel: str = "subscribe") -> str:
    """One job per referral event, recipient and channel: a failing recipient never resends to the others."""
    return f"notify:{event_key}:to:{account_id}:{channel}"


async def publish(notice: Notice, referral: Referral | None, event_key: str) -> int:
    """Put `notice` in every recipient's inbox and queue its WeChat delivery; returns the recipients."""
    return await publish_all([notice], referral, event_key)


async def publish_all(notices: Sequence[Notice], referral: Referral | None, event_key: str,
                      jobs: Sequence[NewJob] = ()) -> int:
    """The notices of one event (an account is in one of them at most) and any other `jobs` it calls for:
    one INSERT for every inbox message and one for every job. Returns the recipients."""
    inbox, sends = [], []
    for notice in notices:
        data = render(TEMPLATES[notice.template], notice.values)
        for account_id in notice.accounts:
            inbox.append(InboxMessage(
                dedupe_key=f"inbox:{event_key}:{account_id}", account_id=account_id, kind=notice.kind,
                title=notice.title[:100], body=notice.body, page=notice.page, data=data,
                referral_id=referral.id if referral else None))
            sends.append(NewJob(SEND_KIND, {"account_id": account_id, "template": notice.template, "data": data,
                                            "page": notice.page, "kind": notice.kind},
                                send_dedupe_key(event_key, account_id)))
    if inbox:
        # A message a first run already wrote is left as it is.
        await InboxMessage.bulk_create(inbox, ignore_conflicts=True)
    await enqueue_all([*sends, *jobs])
    return len(inbox)
