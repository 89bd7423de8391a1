"""Messages of a conversation: stored before they are delivered, numbered without gaps, deduplicated by the
sender's client_msg_id; history pages, read marks and unread counts.

The number: one conditional `UPDATE conversation SET last_seq = last_seq + n ... RETURNING` and the INSERT of
the messages in one transaction. The UPDATE holds the conversation's row lock until the commit, so two senders
take consecutive numbers and commit in that order; a failed INSERT rolls the numbers back with it.

On PostgreSQL a process stores one conversation's messages one statement at a time (`Coalescer`): what arrives
for the conversation while a statement is under way goes, in arrival order, into the next one. Several senders
of one conversation therefore do not each hold a database connection while they queue on its row lock (under
load those waits took the whole pool and the stores fell behind the sends), and a burst costs one commit."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from chat.access import Membership, not_found, participant_ids
from chat.content_check import check_before_delivery
from directory import cache
from errors import InvalidInput, NotFound
from models import ChatAttachment, ChatMessage, CheckState, Conversation, ConversationParticipant, MessageType
from models.outbox import JobState
from outbox.jobs import NewJob, enqueue_all
from outbox.wakeup import request_wake
from sql_batch import dialect_sql as sql
from sql_batch import is_postgres
from wechat.client import WeChatClient

RECHECK_KIND = "chat.recheck"
NOTIFY_KIND = "chat.notify"
MAX_PAGE = 200
WITHDRAWN_BODY = {"withdrawn": True, "text": "该消息因内容审核未通过已被撤回"}


NEXT_SEQ = "UPDATE conversation SET last_seq = last_seq + 1, updated_at = $1 WHERE id = $2 RETURNING last_seq"


@dataclass(frozen=True)
class Draft:
    """A validated message to send: `text` for text, `attachment_id` for image/file, `card` for a case card."""

    type: str
    client_msg_id: str
    text: str = ""
    attachment_id: Any = None
    card: dict = field(default_factory=dict)

    def checked_text(self) -> str:
        """What the content check reads: every text the others will see."""
        if self.type == MessageType.TEXT:
            return self.text
        if self.type == MessageType.CASE_CARD:
            return "\n".join(str(v) for v in self.card.values() if isinstance(v, str) and v.strip())
        return ""


@dataclass(frozen=True)
class Sent:
    message: ChatMessage
    view: dict
    duplicate: bool  # a retried send: the first message, not a new one
    staff_ids: list[int] = field(default_factory=list)  # whom to deliver it to (none for a duplicate)


@dataclass
class NotifyMemo:
    """Conversations this process already queued the quiet-period notification of (conversation id -> period)."""

    periods: dict[int, int] = field(default_factory=dict)


async def _body_for(draft: Draft, conversation: Conversation) -> dict:
    if draft.type == MessageType.TEXT:
        return {"text": draft.text}
    if draft.type == MessageType.CASE_CARD:
        return dict(draft.card)
    attachment = await ChatAttachment.get_or_none(public_id=draft.attachment_id, conversation_id=conversation.id)
    if attachment is None:
        raise NotFound("未找到该附件，请先上传到本会话", code="ATTACHMENT_NOT_FOUND")
    if draft.type == MessageType.IMAGE and not attachment.content_type.startswith("image/"):
        raise InvalidInput("图片消息只能发送 JPG 或 PNG 图片", code="NOT_AN_IMAGE")
    return attachment_body(attachment, conversation)


def attachment_body(attachment: ChatAttachment, conversation: Conversation) -> dict:
    return {"attachment_id": str(attachment.public_id), "filename": attachment.filename,
            "content_type": attachment.content_type, "size": attachment.size,
            "url": f"/api/v1/conversations/{conversation.public_id}/attachments/{attachment.public_id}"}


async def send(conversation: Conversation, sender_id: int, draft: Draft, *, wechat: WeChatClient, openid: str,
               check_timeout: float, quiet: float, memo: NotifyMemo) -> Sent:
    """Store one message (or find the first one this client_msg_id stored) and return it with its view and the
    staff it is for. The caller has checked that the sender takes part (so no text of an outsider reaches the
    content check); the store checks it again, in the same statement or transaction as the number."""
    body = await _body_for(draft, conversation)
    text = draft.checked_text()
    state = await check_before_delivery(wechat, openid, text, check_timeout) if text else CheckState.PASSED
    now = datetime.now(UTC)
    period = int(time.time() // quiet)
    jobs = []
    if memo.periods.get(conversation.id) != period:
        # Participants who are not connected hear of the period's messages once, after it ends.
        jobs.append(NewJob(NOTIFY_KIND, {"conversation_id": conversation.id, "period": period},
                           f"chat:notify:{conversation.id}:{period}",
                           run_at=datetime.fromtimestamp((period + 1) * quiet, UTC)))
    message = ChatMessage(conversation_id=conversation.id, sender_id=sender_id, client_msg_id=draft.client_msg_id,
                          type=draft.type, body=body, check_state=state, created_at=now)
    try:
        if state == CheckState.PENDING or not is_postgres():
            staff_ids = await _store_with_jobs(message, jobs)
        else:
            staff_ids = await _coalescer().store(message, jobs)
    except (IntegrityError, NotStored) as exc:
        if isinstance(exc, NotStored) and not exc.member:
            raise not_found() from None
        # This client_msg_id was stored before (a retry, or two sockets racing): the first message is the answer.
        earlier = await ChatMessage.get_or_none(conversation_id=conversation.id, sender_id=sender_id,
                                                client_msg_id=draft.client_msg_id)
        if earlier is None:
            raise
        return Sent(earlier, await view(earlier, conversation), duplicate=True)
    memo.periods[conversation.id] = period
    conversation.last_seq = max(conversation.last_seq, message.seq)
    return Sent(message, await view(message, conversation), duplicate=False, staff_ids=staff_ids)


class NotStored(Exception):
    """The store skipped a message: its sender is no participant, or its client_msg_id was stored before."""

    def __init__(self, member: bool) -> None:
        self.member = member
        super().__init__("not a participant" if not member else "client_msg_id stored before")


# Membership, numbers, rows, the jobs they call for and the recipients in one statement (one round trip, its own
# transaction) for messages of one conversation, in the given order: only messages of current participants with
# a client_msg_id not stored yet take a number; the UPDATE's row lock orders concurrent statements; a failed
# INSERT (a client_msg_id another process stored meanwhile) undoes them all.
STORE_MANY = """
WITH input AS (
    SELECT t.*, EXISTS (SELECT 1 FROM conversation_participant
                        WHERE conversation_id = $1 AND staff_id = t.sender_id AND left_at IS NULL) AS member
    FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
         WITH ORDINALITY AS t(sender_id, client_msg_id, type, body, check_state, created_at, n)),
fresh AS (
    SELECT input.*, row_number() OVER (ORDER BY n) AS r FROM input
    WHERE member AND NOT EXISTS (SELECT 1 FROM chat_message m WHERE m.conversation_id = $1
                                 AND m.sender_id = input.sender_id AND m.client_msg_id = input.client_msg_id)),
next AS (
    UPDATE conversation SET last_seq = last_seq + (SELECT count(*) FROM fresh), updated_at = $8
    WHERE id = $1 AND EXISTS (SELECT 1 FROM fresh)
    RETURNING last_seq - (SELECT count(*) FROM fresh) AS base),
stored AS (
    INSERT INTO chat_message (conversation_id, seq, sender_id, client_msg_id, type, body, check_state, created_at)
    SELECT $1, next.base + fresh.r, fresh.sender_id, fresh.client_msg_id, fresh.type, fresh.body::jsonb,
           fresh.check_state, fresh.created_at
    FROM fresh, next
    RETURNING id, seq, sender_id, client_msg_id),
jobs AS (
    INSERT INTO outbox_job (kind, payload, dedupe_key, state, attempts, next_attempt_at, locked_by, last_error,
                            created_at, updated_at)
    SELECT j.kind, j.payload::jsonb, j.dedupe_key, $9, 0, j.run_at, '', '', $8, $8
    FROM unnest($10::text[], $11::text[], $12::text[], $13::timestamptz[]) AS j(kind, payload, dedupe_key, run_at)
    WHERE EXISTS (SELECT 1 FROM stored)
    ON CONFLICT (dedupe_key) DO NOTHING)
SELECT input.n, input.member, stored.id, stored.seq,
       ARRAY(SELECT staff_id FROM conversation_participant
             WHERE conversation_id = $1 AND left_at IS NULL) AS staff_ids
FROM input LEFT JOIN stored ON stored.sender_id = input.sender_id AND stored.client_msg_id = input.client_msg_id
ORDER BY input.n
"""
STORE_BATCH = 100  # messages per statement


@dataclass(eq=False)
class _Waiting:
    message: ChatMessage
    jobs: list[NewJob]
    done: asyncio.Future

    @property
    def key(self) -> tuple[int, str]:
        return self.message.sender_id, self.message.client_msg_id  # type: ignore[attr-defined]


class Coalescer:
    """One process's stores (PostgreSQL): at most one statement per conversation under way; the messages that
    arrive meanwhile wait, in order, and go together into the next."""

    def __init__(self) -> None:
        self.waiting: dict[int, list[_Waiting]] = {}
        self.writers: dict[int, asyncio.Task] = {}

    async def store(self, message: ChatMessage, jobs: list[NewJob]) -> list[int]:
        """Store `message` (and `jobs` with it); the current participants. Raises NotStored, IntegrityError."""
        conversation_id = message.conversation_id  # type: ignore[attr-defined]
        item = _Waiting(message, jobs, asyncio.get_running_loop().create_future())
        self.waiting.setdefault(conversation_id, []).append(item)
        if conversation_id not in self.writers:
            self.writers[conversation_id] = asyncio.ensure_future(self._write(conversation_id))
        return await asyncio.shield(item.done)  # a cancelled sender does not take the others' store with it

    async def _write(self, conversation_id: int) -> None:
        try:
            while queue := self.waiting.get(conversation_id):
                batch, rest, keys = [], [], set()
                for item in queue:
                    # One client_msg_id twice (a retry racing its original) waits for the next statement, which
                    # finds the first one stored.
                    if len(batch) < STORE_BATCH and item.key not in keys:
                        keys.add(item.key)
                        batch.append(item)
                    else:
                        rest.append(item)
                if rest:
                    self.waiting[conversation_id] = rest
                else:
                    del self.waiting[conversation_id]
                await self._store(conversation_id, batch)
        finally:
            del self.writers[conversation_id]

    async def _store(self, conversation_id: int, batch: list[_Waiting]) -> None:
        try:
            rows = await _store_many(conversation_id, batch)
        except IntegrityError as exc:
            if len(batch) == 1:
                _settle(batch[0].done, error=exc)
                return
            for item in batch:  # another process stored one of these client_msg_ids meanwhile: one at a time
                await self._store(conversation_id, [item])
            return
        except Exception as exc:
            for item in batch:
                _settle(item.done, error=exc)
            return
        for item, row in zip(batch, rows, strict=True):
            if row["id"] is None:
                _settle(item.done, error=NotStored(bool(row["member"])))
            else:
                item.message.id, item.message.seq = int(row["id"]), int(row["seq"])
                _settle(item.done, result=list(row["staff_ids"]))


def _settle(done: asyncio.Future, *, result: object = None, error: BaseException | None = None) -> None:
    if done.done():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


async def _store_many(conversation_id: int, batch: list[_Waiting]) -> list[dict]:
    messages = [item.message for item in batch]
    jobs = list({job.dedupe_key: job for item in batch for job in item.jobs}.values())
    now = datetime.now(UTC)
    rows = await connections.get("default").execute_query_dict(STORE_MANY, [
        conversation_id, [m.sender_id for m in messages],  # type: ignore[attr-defined]
        [m.client_msg_id for m in messages], [m.type for m in messages],
        [json.dumps(m.body, ensure_ascii=False) for m in messages], [m.check_state for m in messages],
        [m.created_at for m in messages], now, JobState.PENDING,
        [j.kind for j in jobs], [json.dumps(j.payload, ensure_ascii=False) for j in jobs],
        [j.dedupe_key for j in jobs], [(j.run_at or now).astimezone(UTC) for j in jobs]])
    if any((j.run_at or now) <= now for j in jobs):
        request_wake()
    return rows


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Coalescer] = weakref.WeakKeyDictionary()


def _coalescer() -> Coalescer:
    """This process's (this event loop's) coalescer."""
    loop = asyncio.get_running_loop()
    coalescer = _coalescers.get(loop)
    if coalescer is None:
        coalescer = _coalescers[loop] = Coalescer()
    return coalescer


async def _store_with_jobs(message: ChatMessage, jobs: list[NewJob]) -> list[int]:
    """Membership, number, row and the jobs the message calls for (re-check, quiet-period notice) in one
    transaction."""
    conversation_id = message.conversation_id  # type: ignore[attr-defined]
    async with in_transaction() as conn:
        staff_ids = await participant_ids(conversation_id)
        if message.sender_id not in staff_ids:  # type: ignore[attr-defined]
            raise not_found()
        rows = await conn.execute_query_dict(sql(NEXT_SEQ), [message.created_at, conversation_id])
        if not rows:
            raise not_found()
        message.seq = int(rows[0]["last_seq"])
        await message.save()
        if message.check_state == CheckState.PENDING:
            jobs = [*jobs, NewJob(RECHECK_KIND, {"message_id": message.id}, f"chat:recheck:{message.id}")]
        await enqueue_all(jobs)
    return staff_ids


async def sender_view(staff_id: int) -> dict:
    staff = await cache.staff(staff_id)
    institution = await cache.institution(staff.institution_id)  # type: ignore[attr-defined]
    return {"id": str(staff.public_id), "name": staff.name, "title": staff.title, "institution": institution.name}


async def view(message: ChatMessage, conversation: Conversation, senders: dict[int, dict] | None = None) -> dict:
    sender_id = message.sender_id  # type: ignore[attr-defined]
    sender = senders[sender_id] if senders and sender_id in senders else await sender_view(sender_id)
    withdrawn = message.check_state == CheckState.BLOCKED
    return {"conversation_id": str(conversation.public_id), "seq": message.seq, "type": message.type,
            "body": WITHDRAWN_BODY if withdrawn else message.body, "sender": sender,
            "client_msg_id": message.client_msg_id, "check_state": message.check_state,
            "created_at": message.created_at.astimezone(UTC).isoformat()}


async def views(messages: list[ChatMessage], conversation: Conversation) -> list[dict]:
    senders = {sid: await sender_view(sid) for sid in {m.sender_id for m in messages}}  # type: ignore[attr-defined]
    return [await view(m, conversation, senders) for m in messages]


@dataclass(frozen=True)
class Page:
    messages: list[ChatMessage]
    more: bool


async def page(conversation: Conversation, *, after_seq: int | None = None, before_seq: int | None = None,
               limit: int = 50) -> Page:
    """Messages after `after_seq` (oldest first), or before `before_seq`, or the newest ones; always in seq
    order. `more` says whether another page lies in the same direction."""
    limit = max(1, min(limit, MAX_PAGE))
    query = ChatMessage.filter(conversation_id=conversation.id)
    if after_seq is not None:
        rows = await query.filter(seq__gt=after_seq).order_by("seq").limit(limit + 1)
        return Page(rows[:limit], len(rows) > limit)
    if before_seq is not None:
        query = query.filter(seq__lt=before_seq)
    rows = await query.order_by("-seq").limit(limit + 1)
    return Page(list(reversed(rows[:limit])), len(rows) > limit)


async def unread_count(participant: ConversationParticipant) -> int:
    """Messages of the others after the participant's read mark (withdrawn ones do not count)."""
    return await ChatMessage.filter(conversation_id=participant.conversation_id,  # type: ignore[attr-defined]
                                    seq__gt=participant.last_read_seq).exclude(
        sender_id=participant.staff_id).exclude(check_state=CheckState.BLOCKED).count()  # type: ignore[attr-defined]


async def mark_read(membership: Membership, seq: int) -> int:
    """Move the caller's read mark forward to `seq` (never past the newest message, never back); returns it."""
    conversation, participant = membership.conversation, membership.participant
    latest = await Conversation.filter(id=conversation.id).values_list("last_seq", flat=True)
    target = min(seq, int(latest[0]) if latest else 0)
    if target > participant.last_read_seq:
        await ConversationParticipant.filter(id=participant.id, last_read_seq__lt=target).update(
            last_read_seq=target)
    participant.last_read_seq = max(participant.last_read_seq, target)
    return participant.last_read_seq


@dataclass(frozen=True)
class ConversationSummary:
    conversation: Conversation
    participant: ConversationParticipant
    unread: int


UNREAD_BY_CONVERSATION = """
SELECT p.conversation_id AS conversation_id, COUNT(m.id) AS unread
FROM conversation_participant p
JOIN chat_message m ON m.conversation_id = p.conversation_id AND m.seq > p.last_read_seq
     AND m.sender_id <> p.staff_id AND m.check_state <> 'blocked'
WHERE p.staff_id = $1 AND p.left_at IS NULL AND p.conversation_id >= $2 AND p.conversation_id <= $3
GROUP BY p.conversation_id
"""


async def conversations_of(staff_id: int, *, kind: str | None, before_id: int | None,
                           limit: int) -> tuple[list[ConversationSummary], bool]:
    """The staff member's conversations, newest first, with unread counts (one query for the counts)."""
    query = ConversationParticipant.filter(staff_id=staff_id, left_at__isnull=True).select_related("conversation")
    if kind:
        query = query.filter(conversation__kind=kind)
    if before_id is not None:
        query = query.filter(conversation_id__lt=before_id)
    rows = await query.order_by("-conversation_id").limit(limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    if not rows:
        return [], False
    ids = [row.conversation_id for row in rows]  # type: ignore[attr-defined]
    counts = await connections.get("default").execute_query_dict(sql(UNREAD_BY_CONVERSATION),
                                                                 [staff_id, min(ids), max(ids)])
    unread = {int(r["conversation_id"]): int(r["unread"]) for r in counts}
    return [ConversationSummary(row.conversation, row, unread.get(row.conversation_id, 0))  # type: ignore[attr-defined]
            for row in rows], more


async def withdraw(message_id: int) -> ChatMessage | None:
    """Hide a message the re-check found risky; returns it when this call withdrew it."""
    changed = await ChatMessage.filter(id=message_id, check_state=CheckState.PENDING).update(
        check_state=CheckState.BLOCKED)
    return await ChatMessage.get(id=message_id) if changed else None


def period_window(period: int, quiet: float) -> tuple[datetime, datetime]:
    start = datetime.fromtimestamp(period * quiet, UTC)
    return start, start + timedelta(seconds=quiet)
