"""Chat over the WebSocket and the steps every send takes whichever door it came through (HTTP or socket):
store, then deliver through the hub.

Frames the client sends (JSON text):
    {"type": "sync", "conversations": {"<conversation id>": <last seq it has>, ...}}   after (re)connecting
    {"type": "send", "conversation_id": "...", "message": {<as POST .../messages>}}   answered by "ack"
    {"type": "read", "conversation_id": "...", "seq": n}                              answered by "read_ack"
    {"type": "ping", "id": "..."}                                                     answered by "pong"
Frames the server sends: "ready", "message", "ack", "read", "read_ack", "state", "withdrawn", "pong", "error"
(see README "Chat and realtime"). An error frame answers one bad frame; the socket stays open."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import WSMsgType, web
from pydantic import ValidationError
from tortoise.transactions import in_transaction

from appkeys import SETTINGS, WECHAT
from chat import access, messages
from chat.hub import Client, Hub
from chat.schemas import FRAMES, ReadFrame, SendFrame, SyncFrame
from chat.tickets import Redeemer
from errors import DomainError
from miniprogram_api.routing import validation_error
from models import ChatMessage, Conversation, ConversationParticipant, Staff
from security import audit

log = logging.getLogger("referral_cloud.chat")

MAX_FRAME = 64 * 1024
HEARTBEAT = 30.0

HUB: web.AppKey[Hub] = web.AppKey("chat_hub", Hub)
NOTIFY_MEMO: web.AppKey[messages.NotifyMemo] = web.AppKey("chat_notify_memo", messages.NotifyMemo)
REDEEMER: web.AppKey[Redeemer] = web.AppKey("chat_ticket_redeemer", Redeemer)


def _dumps(frame: dict) -> str:
    return json.dumps(frame, ensure_ascii=False, default=str)


def message_frame(view: dict) -> dict:
    return {"type": "message", "conversation_id": view["conversation_id"], "message": view}


async def render(rows: list[ChatMessage], conversation: Conversation) -> list[str]:
    return [_dumps(message_frame(v)) for v in await messages.views(rows, conversation)]


@dataclass(frozen=True)
class Author:
    staff_id: int
    openid: str


async def post_message(app: web.Application, author: Author, conversation: Conversation,
                       draft: messages.Draft) -> messages.Sent:
    """Store the message, then hand it to the hub (after the commit: a socket never sees an unstored message).
    The caller has checked that the author takes part."""
    settings = app[SETTINGS]
    sent = await messages.send(conversation, author.staff_id, draft, wechat=app[WECHAT], openid=author.openid,
                               check_timeout=settings.chat_check_timeout, quiet=settings.chat_notify_quiet,
                               memo=app[NOTIFY_MEMO])
    if not sent.duplicate:
        app[HUB].publish(sent.staff_ids, message_frame(sent.view), conversation_id=conversation.id,
                         seq=sent.message.seq)
    return sent


async def mark_read(app: web.Application, membership: access.Membership, seq: int) -> int:
    before = membership.participant.last_read_seq
    mark = await messages.mark_read(membership, seq)
    if mark > before:
        staff = await messages.sender_view(membership.participant.staff_id)  # type: ignore[attr-defined]
        event = {"type": "read", "conversation_id": str(membership.conversation.public_id), "staff_id": staff["id"],
                 "seq": mark}
        app[HUB].publish(membership.staff_ids, event, conversation_id=membership.conversation.id)
    return mark


async def audit_read(staff_id: int, account_id: int, institution_id: int | None, conversation: Conversation,
                     how: str, count: int) -> None:
    async with in_transaction():
        await audit.record("chat.history_read", "conversation", str(conversation.public_id),
                           actor_staff_id=staff_id, actor_account_id=account_id, institution_id=institution_id,
                           detail={"kind": conversation.kind, "via": how, "messages": count})


# -- the socket ------------------------------------------------------------------------------------------------


class Session:
    """One open socket: reads frames one at a time (so acks come in send order), writes through the hub's queue."""

    def __init__(self, app: web.Application, client: Client, staff: Staff) -> None:
        self.app = app
        self.hub = app[HUB]
        self.client = client
        self.staff = staff

    def reply(self, frame: dict) -> None:
        self.client.put(_dumps(frame))

    def error(self, code: str, message: str, detail: dict | None = None, ref: object = None) -> None:
        frame = {"type": "error", "code": code, "message": message, "detail": detail or {}}
        if ref is not None:
            frame["ref"] = ref
        self.reply(frame)

    async def run(self) -> None:
        ws = self.client.ws
        self.reply({"type": "ready", "staff_id": str(self.staff.public_id),
                    "at": datetime.now(UTC).isoformat()})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await self.on_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                self.error("MALFORMED_FRAME", "仅支持 JSON 文本帧")
            elif msg.type == WSMsgType.ERROR:
                break

    async def on_text(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            self.error("MALFORMED_FRAME", "消息帧不是有效的 JSON")
            return
        kind = frame.get("type") if isinstance(frame, dict) else None
        schema = FRAMES.get(kind) if isinstance(kind, str) else None
        if schema is None:
            self.error("UNKNOWN_FRAME_TYPE", "未知的消息帧类型", {"allowed": sorted(FRAMES)})
            return
        ref = frame.get("message", {}).get("client_msg_id") if kind == "send" and isinstance(
            frame.get("message"), dict) else frame.get("id")
        try:
            parsed = schema.model_validate(frame)
            if isinstance(parsed, SendFrame):
                await self.on_send(parsed)
            elif isinstance(parsed, ReadFrame):
                await self.on_read(parsed)
            elif isinstance(parsed, SyncFrame):
                await self.on_sync(parsed)
            else:
                self.reply({"type": "pong", "id": parsed.id, "at": datetime.now(UTC).isoformat()})
        except ValidationError as exc:
            error = validation_error(exc)
            self.error(error.code, error.message, error.detail, ref)
        except DomainError as exc:
            self.error(exc.code, exc.message, exc.detail, ref)
        except Exception:
            log.exception("chat frame %s failed", kind)
            self.error("INTERNAL_ERROR", "服务器内部错误，请稍后再试", ref=ref)

    async def on_send(self, frame: SendFrame) -> None:
        # Membership is looked up once per socket and conversation; the store checks it again with every message.
        conversation = self.client.conversations.get(frame.conversation_id)
        if conversation is None:
            conversation = (await access.membership(self.client.staff_id, frame.conversation_id)).conversation
            self.client.conversations[frame.conversation_id] = conversation
        try:
            sent = await post_message(self.app, Author(self.client.staff_id, self.client.openid), conversation,
                                      frame.message.draft())
        except DomainError:
            self.client.conversations.pop(frame.conversation_id, None)  # e.g. no longer a participant
            raise
        self.reply({"type": "ack", "conversation_id": str(frame.conversation_id),
                    "client_msg_id": frame.message.client_msg_id, "seq": sent.message.seq,
                    "duplicate": sent.duplicate, "check_state": sent.message.check_state})

    async def on_read(self, frame: ReadFrame) -> None:
        membership = await access.membership(self.client.staff_id, frame.conversation_id)
        mark = await mark_read(self.app, membership, frame.seq)
        self.reply({"type": "read_ack", "conversation_id": str(frame.conversation_id), "last_read_seq": mark,
                    "unread": await messages.unread_count(membership.participant)})

    async def on_sync(self, frame: SyncFrame) -> None:
        wanted = {str(k): v for k, v in frame.conversations.items()}
        rows = await ConversationParticipant.filter(staff_id=self.client.staff_id, left_at__isnull=True,
                                                    conversation__public_id__in=list(frame.conversations)) \
            .select_related("conversation")
        found = {str(row.conversation.public_id): row.conversation for row in rows}
        missing = sorted(set(wanted) - set(found))
        if missing:
            error = access.not_found()
            self.error(error.code, error.message, {"conversation_ids": missing})
        for public_id, conversation in found.items():
            last = wanted[public_id]
            self.hub.resume(self.client, conversation.id, last, conversation.last_seq)
            if conversation.last_seq > last:  # history read through the socket, audited like a page read
                await audit_read(self.client.staff_id, self.client.account_id,
                                 self.staff.institution_id,  # type: ignore[attr-defined]
                                 conversation, "realtime", conversation.last_seq - last)
        self.reply({"type": "synced", "conversations": {k: found[k].last_seq for k in found}})


async def writer(client: Client) -> None:
    """Write the socket's queued frames in order; the first failure ends the socket."""
    ws = client.ws
    while True:
        frame = await client.queue.get()
        try:
            await ws.send_str(frame)
        except Exception:
            with contextlib.suppress(Exception):
                await ws.close()
            return


async def serve_socket(request: web.Request, staff: Staff, account_id: int, openid: str) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_FRAME)
    await ws.prepare(request)
    hub = request.app[HUB]
    client = Client(ws=ws, staff_id=staff.id, account_id=account_id, openid=openid)
    # Where each of the staff member's conversations stands: later messages reach the socket in order, gaps
    # filled from the database; earlier ones the client asks for with a "sync" frame.
    rows = await ConversationParticipant.filter(staff_id=staff.id, left_at__isnull=True).select_related("conversation")
    client.seen = {row.conversation.id: row.conversation.last_seq for row in rows}
    client.base = dict(client.seen)
    # The conversations it may send to, known without a query per first send (the store checks again anyway).
    client.conversations = {row.conversation.public_id: row.conversation for row in rows}
    hub.attach(client)
    write = asyncio.create_task(writer(client), name="chat-socket-writer")
    try:
        await Session(request.app, client, staff).run()
    finally:
        hub.detach(client)
        write.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await write
    return ws
