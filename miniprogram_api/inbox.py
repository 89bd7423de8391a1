"""In-app inbox routes: the caller's notifications, newest first, with the unread count; mark one read."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field

from accounts.principal import authenticate
from miniprogram_api.routing import Api, QueryBool, QueryInt, json_response, parse_query
from models import InboxMessage
from notifications import inbox

api = Api()
TAGS = ["inbox"]


class InboxQuery(BaseModel):
    cursor: str | None = Field(default=None, max_length=64)
    limit: QueryInt = Field(default=20, ge=1, le=100)
    unread: QueryBool = Field(default=False, description="true：只看未读")


class InboxMessageOut(BaseModel):
    id: str
    kind: str = Field(description="referral_todo / referral_progress / admission / admission_eve / "
                                   "referral_overdue / referral_escalated / referral_cancelled")
    title: str
    body: str
    page: str = Field(description="点击后打开的小程序页面")
    data: dict = Field(description="订阅消息的关键词取值")
    referral_id: str | None
    created_at: datetime
    read: bool
    read_at: datetime | None


class InboxPage(BaseModel):
    items: list[InboxMessageOut]
    next_cursor: str | None
    unread_count: int


class ReadOut(BaseModel):
    message: InboxMessageOut
    unread_count: int


def _view(message: InboxMessage, referrals: dict[int, str]) -> dict:
    return {"id": str(message.public_id), "kind": message.kind, "title": message.title, "body": message.body,
            "page": message.page, "data": message.data,
            "referral_id": referrals.get(message.referral_id),  # type: ignore[attr-defined]
            "created_at": message.created_at, "read": message.read_at is not None, "read_at": message.read_at}


@api.route("GET", "/api/v1/inbox", summary="站内消息（新消息在前）与未读数", tags=TAGS, query=InboxQuery,
           response=InboxPage)
async def list_messages(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    query = parse_query(request, InboxQuery)
    rows, cursor = await inbox.page(principal.account_id, cursor=query.cursor, limit=query.limit,
                                    unread_only=query.unread)
    referrals = await inbox.referral_ids(rows)
    return json_response(InboxPage(items=[_view(m, referrals) for m in rows], next_cursor=cursor,
                                   unread_count=await inbox.unread_count(principal.account_id)))


@api.route("POST", "/api/v1/inbox/{id}/read", summary="标记一条站内消息为已读", tags=TAGS, response=ReadOut,
           responses={404: "消息不存在"})
async def mark_read(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    message = await inbox.mark_read(principal.account_id, request.match_info["id"])
    referrals = await inbox.referral_ids([message])
    return json_response(ReadOut(message=_view(message, referrals),
                                 unread_count=await inbox.unread_count(principal.account_id)))
