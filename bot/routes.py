"""The message-push endpoint WeChat calls: `GET /wechat/push` (URL check) and `POST /wechat/push` (messages and
events). A push is checked, written as a `bot.message` outbox job and answered `success` at once; the job does
the work, so WeChat's 5-second limit is never at risk and its retries are handled once (job dedupe key)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from appkeys import KV_STORE, SETTINGS
from bot import push
from errors import Unauthenticated
from miniprogram_api.routing import Api, parse_query
from outbox.jobs import enqueue

api = Api()
TAGS = ["wechat-push"]
JOB_KIND = "bot.message"


class VerifyQuery(BaseModel):
    signature: str = Field(max_length=64, description="sha1(sort(Token, timestamp, nonce))")
    timestamp: str = Field(max_length=16)
    nonce: str = Field(max_length=64)
    echostr: str = Field(max_length=256, description="校验通过时原样返回")


class PushQuery(BaseModel):
    signature: str | None = Field(default=None, max_length=64,
                                  description="sha1(sort(Token, timestamp, nonce))；明文和安全模式都必带（缺少时 401）")
    timestamp: str = Field(max_length=16)
    nonce: str = Field(max_length=64)
    openid: str | None = Field(default=None, max_length=64)
    encrypt_type: Literal["aes", "raw"] | None = Field(default=None, description="aes：安全模式")
    msg_signature: str | None = Field(default=None, max_length=64,
                                      description="安全模式：sha1(sort(Token, timestamp, nonce, Encrypt))")


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it exceeds `limit`, whatever Content-Length claimed."""
    if request.content_length is not None and request.content_length > limit:
        raise push.PayloadTooLarge()
    chunks, size = [], 0
    while chunk := await request.content.read(16 * 1024):
        size += len(chunk)
        if size > limit:
            raise push.PayloadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain")


@api.route("GET", "/wechat/push", summary="微信消息推送服务器地址校验（原样返回 echostr）", tags=TAGS, auth=False,
           query=VerifyQuery, content_type="text/plain",
           responses={401: "签名错误或时间戳过期"})
async def verify_url(request: web.Request) -> web.Response:
    query = parse_query(request, VerifyQuery)
    push.check_signature(request.app[SETTINGS].wechat_push_token, query.signature, query.timestamp, query.nonce)
    push.check_timestamp(query.timestamp)
    return _text(query.echostr)


@api.route("POST", "/wechat/push", summary="微信消息推送（明文或安全模式，XML 或 JSON）；立即回复 success",
           tags=TAGS, auth=False, query=PushQuery, body=push.PushMessage, content_type="text/plain",
           responses={400: "内容无法解析（含 DTD/实体的 XML、无效 JSON、无法解密）", 401: "签名错误或时间戳过期",
                      409: "重复的推送（nonce 已用过）", 413: "推送内容过大"})
async def receive(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    query = parse_query(request, PushQuery)
    # Everything that needs no body is checked before the body is read, let alone parsed: an unsigned request
    # never reaches a parser. WeChat signs the URL in safe mode too; msg_signature then also covers Encrypt.
    push.check_signature(settings.wechat_push_token, query.signature, query.timestamp, query.nonce)
    push.check_timestamp(query.timestamp)
    if query.encrypt_type == "aes" and not query.msg_signature:
        raise Unauthenticated("安全模式推送缺少 msg_signature", code="PUSH_SIGNATURE")
    raw = await _read_limited(request, push.MAX_BODY)
    message = push.open_push(raw, token=settings.wechat_push_token, aes_key=settings.wechat_aes_key,
                             appid=settings.wechat_appid, timestamp=query.timestamp, nonce=query.nonce,
                             encrypt_type=query.encrypt_type, msg_signature=query.msg_signature)
    nonce_key = await push.claim_nonce(request.app[KV_STORE], query.timestamp, query.nonce)
    try:
        await enqueue(JOB_KIND, message.model_dump(mode="json", by_alias=True, exclude={"Encrypt"},
                                                   exclude_none=True), message.dedupe_key())
    except BaseException:
        # Not accepted after all: WeChat's retry (same nonce) must not be taken for a replay.
        await request.app[KV_STORE].delete(nonce_key)
        raise
    return _text("success")
