"""Chat routes: conversations, their messages, read marks and attachments; the realtime ticket and WebSocket.

Everything is under /api/v1 (DESIGN §8: paths are under /api/v1 unless they start with another root), the
WebSocket included: `GET /api/v1/realtime?ticket=...`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from accounts.principal import authenticate, load_principal
from appkeys import SETTINGS, STORAGE
from chat import access, attachments, messages, realtime, tickets
from chat.schemas import SendIn
from cursors import decode_cursor, encode_cursor
from errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from miniprogram_api.idempotency import idempotent
from miniprogram_api.routing import Api, json_response, parse_body, parse_query, read_upload
from models import Conversation, ConversationParticipant, Staff, WeChatAccount
from referrals.attachments import DOWNLOAD_MEDIA, MAX_BYTES

api = Api()
TAGS = ["chat"]
NOT_FOUND = {404: "会话不存在或您不是会话成员"}


class SenderOut(BaseModel):
    id: str
    name: str
    title: str
    institution: str


class MessageOut(BaseModel):
    conversation_id: str
    seq: int = Field(description="会话内从 1 开始连续编号")
    type: Literal["text", "image", "file", "case_card"]
    body: dict[str, Any] = Field(description="text: {text}; image/file: {attachment_id, filename, content_type, "
                                             "size, url}; case_card: 卡片字段; 被撤回: {withdrawn: true, text}")
    sender: SenderOut
    client_msg_id: str
    check_state: Literal["passed", "pending", "blocked"] = Field(
        description="内容安全检查：passed 已通过；pending 检查暂不可用，已送达并将复核；blocked 复核未通过已撤回")
    created_at: datetime


class SentOut(BaseModel):
    message: MessageOut
    duplicate: bool = Field(description="true：同一 client_msg_id 已发送过，返回的是第一次保存的消息")


class ConversationOut(BaseModel):
    id: str
    kind: Literal["consultation", "ward_round"]
    subject_id: str = Field(description="会诊或查房的编号")
    last_seq: int
    last_read_seq: int
    unread: int
    updated_at: datetime


class ConversationList(BaseModel):
    items: list[ConversationOut]
    next_cursor: str | None


class ParticipantOut(BaseModel):
    staff: SenderOut
    last_read_seq: int
    joined_at: datetime


class ConversationDetail(ConversationOut):
    participants: list[ParticipantOut]


class ConversationQuery(BaseModel):
    kind: Literal["consultation", "ward_round"] | None = None
    cursor: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=50, ge=1, le=200)


class HistoryQuery(BaseModel):
    after_seq: int | None = Field(default=None, ge=0, description="只取 seq 大于它的消息（旧到新）")
    before_seq: int | None = Field(default=None, ge=1, description="只取 seq 小于它的消息（向前翻页）")
    limit: int = Field(default=50, ge=1, le=messages.MAX_PAGE)

    @model_validator(mode="after")
    def _one_direction(self) -> HistoryQuery:
        if self.after_seq is not None and self.before_seq is not None:
            raise ValueError("after_seq 与 before_seq 只能给一个")
        return self


class HistoryPage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None = Field(description="同一方向的下一页：作为 after_seq（或 before_seq）再请求")
    has_more: bool
    last_seq: int
    last_read_seq: int


class ReadIn(BaseModel):
    seq: int = Field(ge=0, description="已读到的 seq（不会后退，也不会超过最新消息）")


class ReadOut(BaseModel):
    last_read_seq: int
    unread: int


class AttachmentOut(BaseModel):
    attachment_id: str
    filename: str
    content_type: str
    size: int
    url: str


class TicketOut(BaseModel):
    ticket: str
    expires_in: int
    url: str = Field(description="用此地址建立 WebSocket（票据只能使用一次）")


class RealtimeQuery(BaseModel):
    ticket: str = Field(min_length=1, max_length=2048)


class FrameOut(BaseModel):
    """Frames the server sends on the WebSocket (JSON text): ready, message, ack, read, read_ack, synced, state,
    withdrawn, pong, error. See the README, "Chat and realtime"."""

    type: str
    conversation_id: str | None = None


async def _staff_principal(request: web.Request):
    principal = await authenticate(request)
    if principal.staff_id is None:
        raise NotFound("未找到该会话，或您不是会话成员", code="CONVERSATION_NOT_FOUND")
    return principal


def _conversation_view(summary_conversation, participant: ConversationParticipant, unread: int) -> dict:
    c = summary_conversation
    return {"id": str(c.public_id), "kind": c.kind, "subject_id": str(c.subject_id), "last_seq": c.last_seq,
            "last_read_seq": participant.last_read_seq, "unread": unread, "updated_at": c.updated_at}


@api.route("GET", "/api/v1/conversations", summary="我参与的会话（最新在前）与未读数", tags=TAGS,
           query=ConversationQuery, response=ConversationList)
async def list_conversations(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    query = parse_query(request, ConversationQuery)
    if principal.staff_id is None:
        return json_response(ConversationList(items=[], next_cursor=None))
    rows, more = await messages.conversations_of(principal.staff_id, kind=query.kind,
                                                 before_id=decode_cursor(query.cursor, Conversation)
                                                 if query.cursor else None,
                                                 limit=query.limit)
    items = [_conversation_view(r.conversation, r.participant, r.unread) for r in rows]
    cursor = encode_cursor(rows[-1].conversation.id) if more and rows else None
    return json_response(ConversationList(items=items, next_cursor=cursor))


@api.route("GET", "/api/v1/conversations/{id}", summary="会话详情与成员", tags=TAGS, response=ConversationDetail,
           responses=NOT_FOUND)
async def get_conversation(request: web.Request) -> web.Response:
    principal = await _staff_principal(request)
    membership = await access.member(principal, request.match_info["id"])
    rows = await ConversationParticipant.filter(conversation_id=membership.conversation.id, left_at__isnull=True) \
        .order_by("id")
    participants = [{"staff": await messages.sender_view(p.staff_id),  # type: ignore[attr-defined]
                     "last_read_seq": p.last_read_seq, "joined_at": p.joined_at} for p in rows]
    view = _conversation_view(membership.conversation, membership.participant,
                              await messages.unread_count(membership.participant))
    return json_response(ConversationDetail(**view, participants=participants))


@api.route("GET", "/api/v1/conversations/{id}/messages", summary="会话消息（按 seq 分页；读取记入审计）",
           tags=TAGS, query=HistoryQuery, response=HistoryPage, responses=NOT_FOUND)
async def history(request: web.Request) -> web.Response:
    principal = await _staff_principal(request)
    query = parse_query(request, HistoryQuery)
    membership = await access.member(principal, request.match_info["id"])
    conversation = membership.conversation
    page = await messages.page(conversation, after_seq=query.after_seq, before_seq=query.before_seq,
                               limit=query.limit)
    if page.messages:
        await realtime.audit_read(principal.staff_id, principal.account_id, principal.institution_id,
                                  conversation, "http", len(page.messages))
    cursor = None
    if page.more and page.messages:
        cursor = str(page.messages[0].seq if query.after_seq is None else page.messages[-1].seq)
    return json_response(HistoryPage(items=await messages.views(page.messages, conversation), next_cursor=cursor,
                                     has_more=page.more, last_seq=conversation.last_seq,
                                     last_read_seq=membership.participant.last_read_seq))


async def _author(principal) -> realtime.Author:
    openid = await WeChatAccount.filter(id=principal.account_id).values_list("openid", flat=True)
    return realtime.Author(principal.staff_id, openid[0] if openid else "")


@api.route("POST", "/api/v1/conversations/{id}/messages",
           summary="发送消息（先保存再投递；同一 client_msg_id 重发时返回 200 与第一次保存的消息）",
           tags=TAGS, body=SendIn, response=SentOut, status=201,
           responses={**NOT_FOUND, 422: "内容有误或未通过内容安全检查"})
async def send(request: web.Request) -> web.Response:
    principal = await _staff_principal(request)

    async def run() -> web.Response:
        body = await parse_body(request, SendIn)
        membership = await access.member(principal, request.match_info["id"])
        sent = await realtime.post_message(request.app, await _author(principal), membership.conversation,
                                           body.draft())
        return json_response(SentOut(message=sent.view, duplicate=sent.duplicate),
                             status=200 if sent.duplicate else 201)

    # client_msg_id already makes a send idempotent; an Idempotency-Key is honoured too, as on every POST.
    return await idempotent(request, principal, run)


@api.route("POST", "/api/v1/conversations/{id}/read", summary="标记已读到某条消息", tags=TAGS, body=ReadIn,
           response=ReadOut, responses=NOT_FOUND)
async def read(request: web.Request) -> web.Response:
    principal = await _staff_principal(request)
    body = await parse_body(request, ReadIn)
    membership = await access.member(principal, request.match_info["id"])
    mark = await realtime.mark_read(request.app, membership, body.seq)
    return json_response(ReadOut(last_read_seq=mark, unread=await messages.unread_count(membership.participant)))


@api.route("POST", "/api/v1/conversations/{id}/attachments", summary="上传图片或文件（JPG/PNG/PDF，≤10 MB），再以"
           "image/file 消息发送", tags=TAGS, upload=True, response=AttachmentOut, status=201,
           responses={**NOT_FOUND, 400: "上传内容格式不正确", 413: "文件过大", 415: "文件类型不支持"})
async def upload(request: web.Request) -> web.Response:
    principal = await _staff_principal(request)
    membership = await access.member(principal, request.match_info["id"])
    filename, data = await read_upload(request, MAX_BYTES)
    attachment = await attachments.add(membership, principal.staff_id, request.app[STORAGE], filename=filename,
                                       data=data)
    return json_response(messages.attachment_body(attachment, membership.conversation), status=201)


@api.route("GET", "/api/v1/conversations/{id}/attachments/{attachment_id}", summary="下载会话中的图片或文件",
           tags=TAGS, content_type=DOWNLOAD_MEDIA, responses=NOT_FOUND)
async def download(request: web.Request) -> web.Response:
    principal = await _staff_principal(request)
    membership = await access.member(principal, request.match_info["id"])
    attachment, data = await attachments.read(membership, request.app[STORAGE], request.match_info["attachment_id"])
    return web.Response(body=data, content_type=attachment.content_type, headers={
        "Content-Disposition": "attachment; filename*=UTF-8''" + quote(attachment.filename, safe=""),
        "X-Content-Type-Options": "nosniff"})


@api.route("POST", "/api/v1/realtime/ticket", summary="取一次性实时连接票据（WebSocket 无法携带 Authorization 头）",
           tags=TAGS, response=TicketOut, status=201, responses={403: "仅限医联体工作人员"})
async def ticket(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    if principal.staff_id is None:
        raise Forbidden("仅限医联体工作人员使用", code="STAFF_ONLY")
    account = await WeChatAccount.get(id=principal.account_id)
    ttl = request.app[SETTINGS].realtime_ticket_ttl
    value = tickets.issue(request.app[SETTINGS].jwt_secret, account.public_id, ttl)
    return json_response(TicketOut(ticket=value, expires_in=ttl, url=f"/api/v1/realtime?ticket={value}"), status=201)


@api.route("GET", "/api/v1/realtime", summary="实时连接：升级为 WebSocket（收发消息、已读、状态变化、ping）",
           tags=TAGS, query=RealtimeQuery, response=FrameOut, status=101, auth=False,
           responses={400: "不是 WebSocket 升级请求", 401: "票据缺失、无效、过期或已使用"})
async def realtime_socket(request: web.Request) -> web.StreamResponse:
    if not web.WebSocketResponse().can_prepare(request).ok:
        raise InvalidInput("请以 WebSocket 方式连接此地址", code="WEBSOCKET_REQUIRED", status=400)
    redeemer = request.app[realtime.REDEEMER]
    account_id = await redeemer.redeem(request.app[SETTINGS].jwt_secret, request.query.get("ticket", ""))
    account = await WeChatAccount.get_or_none(public_id=account_id).select_related("staff")
    if account is None:
        raise Unauthenticated("账号不存在，请重新登录", code="TOKEN_INVALID")
    principal = await load_principal(account)
    if principal.staff_id is None:
        raise Forbidden("仅限医联体工作人员使用", code="STAFF_ONLY")
    staff = await Staff.get(id=principal.staff_id)
    return await realtime.serve_socket(request, staff, account.id, account.openid)
