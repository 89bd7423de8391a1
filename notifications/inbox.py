"""The in-app inbox: every notification lands here, whether or not WeChat could deliver it."""

from __future__ import annotations

import uuid

from cursors import decode_cursor, encode_cursor
from errors import NotFound
from models import InboxMessage, Referral
from timeutil import utcnow


async def page(account_id: int, *, cursor: str | None, limit: int,
               unread_only: bool = False) -> tuple[list[InboxMessage], str | None]:
    """Newest first; the cursor is the last id of the previous page."""
    query = InboxMessage.filter(account_id=account_id)
    if unread_only:
        query = query.filter(read_at=None)
    if cursor:
        query = query.filter(id__lt=decode_cursor(cursor, InboxMessage))
    rows = await query.order_by("-id").limit(limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)


async def unread_count(account_id: int) -> int:
    return await InboxMessage.filter(account_id=account_id, read_at=None).count()


async def mark_read(account_id: int, public_id: str) -> InboxMessage:
    """Mark one of the caller's messages read (again is harmless); anyone else's is not found."""
    try:
        key = uuid.UUID(public_id)
    except ValueError:
        raise NotFound("未找到该消息", code="MESSAGE_NOT_FOUND") from None
    message = await InboxMessage.get_or_none(public_id=key, account_id=account_id)
    if message is None:
        raise NotFound("未找到该消息", code="MESSAGE_NOT_FOUND")
    if message.read_at is None:
        await InboxMessage.filter(id=message.id, read_at=None).update(read_at=utcnow())
        await message.refresh_from_db()
    return message


async def referral_ids(messages: list[InboxMessage]) -> dict[int, str]:
    """Public ids of the referrals the messages are about."""
    ids = {m.referral_id for m in messages if m.referral_id}  # type: ignore[attr-defined]
    if not ids:
        return {}
    return {pk: str(public) for pk, public in await Referral.filter(id__in=ids).values_list("id", "public_id")}
