"""The conversation of a consultation or ward round: opened by that code, inside its own transaction, and told
about its state changes after the commit. This is the interface consults/ builds on."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient

from chat import hub
from errors import InvalidInput
from models import Conversation, ConversationKind, ConversationParticipant


def _check_kind(kind: str) -> None:
    if kind not in ConversationKind.ALL:
        raise InvalidInput("未知的会话类型", code="UNKNOWN_CONVERSATION_KIND", detail={"kind": kind})


async def open_conversation(kind: str, subject_id: uuid.UUID, staff_ids: Iterable[int],
                            using_db: BaseDBAsyncClient | None = None) -> Conversation:
    """The conversation of (kind, subject_id), created on first call; every staff member given is a participant
    afterwards. Safe to call again and from concurrent transactions (the unique key decides)."""
    _check_kind(kind)
    conversation, _ = await Conversation.get_or_create(kind=kind, subject_id=subject_id, using_db=using_db)
    await add_participants(conversation, staff_ids, using_db=using_db)
    return conversation


async def add_participants(conversation: Conversation, staff_ids: Iterable[int],
                           using_db: BaseDBAsyncClient | None = None) -> None:
    """Make these staff members participants (again, if they had left); the others stay as they are."""
    ids = sorted(set(staff_ids))
    if not ids:
        return
    await ConversationParticipant.bulk_create(
        [ConversationParticipant(conversation_id=conversation.id, staff_id=staff_id) for staff_id in ids],
        ignore_conflicts=True, using_db=using_db)
    await ConversationParticipant.filter(conversation_id=conversation.id, staff_id__in=ids,
                                         left_at__isnull=False).using_db(using_db).update(left_at=None)


async def remove_participant(conversation: Conversation, staff_id: int,
                             using_db: BaseDBAsyncClient | None = None) -> None:
    """The staff member leaves: they keep no access to the conversation from now on."""
    await ConversationParticipant.filter(conversation_id=conversation.id, staff_id=staff_id,
                                         left_at__isnull=True).using_db(using_db).update(left_at=datetime.now(UTC))


async def conversation_of(kind: str, subject_id: uuid.UUID) -> Conversation | None:
    return await Conversation.get_or_none(kind=kind, subject_id=subject_id)


async def announce_state(kind: str, subject_id: uuid.UUID, state: str, detail: dict) -> None:
    """Tell the conversation's connected participants that its consultation or round changed state. Call it
    after the transaction that made the change has committed; a lost announcement costs nothing durable (the
    client reads the consultation or round again when it reconnects)."""
    conversation = await conversation_of(kind, subject_id)
    if conversation is None:
        return
    await hub.announce(conversation, {"type": "state", "kind": kind, "subject_id": str(subject_id),
                                      "state": state, "detail": detail})
