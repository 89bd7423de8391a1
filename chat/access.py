"""Who may read and write a conversation: its current participants, nobody else (others get 404, so a
conversation's existence is not disclosed)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from accounts.principal import Principal
from errors import NotFound
from models import Conversation, ConversationParticipant


@dataclass(frozen=True)
class Membership:
    """The conversation, the caller's participant row, and every current participant's staff id."""

    conversation: Conversation
    participant: ConversationParticipant
    staff_ids: tuple[int, ...]


def not_found() -> NotFound:
    return NotFound("未找到该会话，或您不是会话成员", code="CONVERSATION_NOT_FOUND")


def parse_id(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise not_found() from None


async def membership(staff_id: int | None, conversation_id: object) -> Membership:
    """The caller's membership of a conversation (one query: every current participant with the conversation)."""
    if staff_id is None:
        raise not_found()
    rows = await ConversationParticipant.filter(conversation__public_id=parse_id(conversation_id),
                                                left_at__isnull=True).select_related("conversation")
    mine = next((row for row in rows if row.staff_id == staff_id), None)  # type: ignore[attr-defined]
    if mine is None:
        raise not_found()
    return Membership(mine.conversation, mine, tuple(row.staff_id for row in rows))  # type: ignore[attr-defined]


async def member(principal: Principal, conversation_id: object) -> Membership:
    return await membership(principal.staff_id, conversation_id)


async def participant_ids(conversation_id: int) -> list[int]:
    return list(await ConversationParticipant.filter(conversation_id=conversation_id, left_at__isnull=True)
                .values_list("staff_id", flat=True))
