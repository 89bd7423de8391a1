"""The sandbox's HTTP face: WeChat's own paths and JSON, plus /sandbox/* endpoints for tests and the demo."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import qrcode
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from wechat.sandbox.state import ApiError, SandboxState

STATE: web.AppKey[SandboxState] = web.AppKey("wechat_sandbox_state", SandboxState)

_dumps = partial(json.dumps, ensure_ascii=False)
WeChatHandler = Callable[[web.Request, SandboxState], Awaitable[Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _wechat_json(data: dict[str, Any]) -> web.Response:
    # WeChat's own content type, so clients that insist on application/json are tested honestly.
    return web.Response(text=_dumps(data), content_type="application/json", charset="utf-8")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder goes
        raise ApiError(47001, "data format error") from None
    if not isinstance(body, dict):
        raise ApiError(47001, "data format error")
    return body


def _wechat_endpoint(path: str, *, token: bool = True) -> Callable[[WeChatHandler], Handler]:
    """Wrap a WeChat API handler: call counting, injected faults, the access-token check, errcode replies."""

    def wrap(handler: WeChatHandler) -> Handler:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            state = request.app[STATE]
            state.count_call(path)
            fault = state.take_fault(path)
            try:
                if fault and fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault and fault.errcode is not None:
                    raise ApiError(fault.errcode, fault.errmsg)
                if token:
                    state.check_token(request.query.get("access_token"))
                result = await handler(request, state)
            except ApiError as exc:
                return _wechat_json({"errcode": exc.errcode, "errmsg": f"{exc.errmsg} rid: {secrets.token_hex(12)}"})
            return result if isinstance(result, web.StreamResponse) else _wechat_json(result)

        return endpoint

    return wrap


# -- WeChat paths -------------------------------------------------------------------------------------------


@_wechat_endpoint("/cgi-bin/stable_token", token=False)
async def stable_token(request: web.Request, state: SandboxState) -> dict[str, Any]:
    body = await _json_body(request)
    if body.get("grant_type") != "client_credential":
        raise ApiError(40002, "invalid grant_type")
    issued = state.stable_token(body.get("appid"), body.get("secret"), force_refresh=bool(body.get("force_refresh")))
    return {"access_token": issued.value, "expires_in": int(issued.expires_at - state.now())}


@_wechat_endpoint("/cgi-bin/token", token=False)
async def plain_token(request: web.Request, state: SandboxState) -> dict[str, Any]:
    query = request.query
    if query.get("grant_type") != "client_credential":
        raise ApiError(40002, "invalid grant_type")
    issued = state.plain_token(query.get("appid"), query.get("secret"))
    return {"access_token": issued.value, "expires_in": int(issued.expires_at - state.now())}


@_wechat_endpoint("/sns/jscode2session", token=False)
async def jscode2session(request: web.Request, state: SandboxState) -> dict[str, Any]:
    query = request.query
    login = state.code2session(query.get("appid"), query.get("secret"), query.get("js_code"),
                               query.get("grant_type"))
    reply = {"openid": login.openid, "session_key": login.session_key}
    if login.unionid:
        reply["unionid"] = login.unionid
    return reply


@_wechat_endpoint("/cgi-bin/message/subscribe/send")
async def subscribe_send(request: web.Request, state: SandboxState) -> dict[str, Any]:
    msgid = state.send_subscribe(await _json_body(request))
    return {"errcode": 0, "errmsg": "ok", "msgid": msgid}


@_wechat_endpoint("/cgi-bin/message/custom/send")
async def custom_send(request: web.Request, state: SandboxState) -> dict[str, Any]:
    state.send_customer_service(await _json_body(request))
    return {"errcode": 0, "errmsg": "ok"}


@_wechat_endpoint("/wxa/getwxacodeunlimit")
async def wxacode_unlimit(request: web.Request, state: SandboxState) -> web.Response:
    scene, page, width = state.check_wxacode(await _json_body(request))
    return web.Response(body=render_wxacode(scene, page, width), content_type="image/png")


@_wechat_endpoint("/wxa/business/getuserphonenumber")
async def user_phone_number(request: web.Request, state: SandboxState) -> dict[str, Any]:
    body = await _json_body(request)
    return {"errcode": 0, "errmsg": "ok", "phone_info": state.phone_number(body.get("code"))}


@_wechat_endpoint("/wxa/msg_sec_check")
async def msg_sec_check(request: web.Request, state: SandboxState) -> dict[str, Any]:
    return state.msg_sec_check(await _json_body(request))


def render_wxacode(scene: str, page: str, width: int) -> bytes:
    """A real, scannable PNG of `page?scene=scene` (a QR code stands in for WeChat's round code)."""
    image = qrcode.make(f"{page}?scene={scene}", border=2).get_image().convert("L")
    image = image.resize((width, width), resample=0)  # nearest neighbour keeps the modules sharp
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


# -- sandbox-only endpoints ------------------------------------------------------------------------------------


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": {"code": "BAD_REQUEST", "message": message, "detail": {}}}, status=400,
                             dumps=_dumps)


async def _sandbox_body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):
        return _bad_request("请求体不是有效的 JSON")
    return body if isinstance(body, dict) else _bad_request("请求体应为 JSON 对象")


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} 应为非空文本")
    return value


def _sandbox_endpoint(handler: Callable[[SandboxState, dict[str, Any]], Any]) -> Handler:
    """A JSON-in, JSON-out sandbox endpoint; a ValueError becomes a 400 with its (Chinese) message."""

    async def endpoint(request: web.Request) -> web.Response:
        body = await _sandbox_body(request) if request.method == "POST" else dict(request.query)
        if isinstance(body, web.Response):
            return body
        try:
            result = handler(request.app[STATE], body)
        except ValueError as exc:
            return _bad_request(str(exc))
        return web.json_response(result, dumps=_dumps)

    return endpoint


@_sandbox_endpoint
def login_code(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    code = state.mint_login_code(_text(body, "openid"), _text(body, "unionid", required=False))
    return {"code": code, "expires_in": int(state.code_ttl)}


@_sandbox_endpoint
def phone_code(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    code = state.mint_phone_code(_text(body, "phone"), _text(body, "country_code", required=False) or "86")
    return {"code": code, "expires_in": int(state.code_ttl)}


@_sandbox_endpoint
def join_voip(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """Stands in for wx.joinVoIPChat: checks the room's signature for this user and lets them in."""
    time_stamp = body.get("timeStamp")
    if not isinstance(time_stamp, int) or isinstance(time_stamp, bool):
        raise ValueError("timeStamp 应为整数")
    members = state.join_voip(_text(body, "openid"), _text(body, "groupId"), _text(body, "nonceStr"), time_stamp,
                              _text(body, "signature"))
    return {"errCode": 0, "errMsg": "joinVoIPChat:ok", "openIdList": members}


@_sandbox_endpoint
def add_template(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    fields = body.get("fields")
    if not isinstance(fields, (dict, list)):
        raise ValueError("fields 应为对象（例如 {\"thing1\": \"thing\"}）或关键词列表（例如 [\"thing1\"]）")
    template = state.register_template(_text(body, "template_id"), fields, title=str(body.get("title", "")))
    return {"template_id": template.template_id, "title": template.title, "fields": template.fields}


@_sandbox_endpoint
def list_templates(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    return {"items": [{"template_id": t.template_id, "title": t.title, "fields": t.fields, "enums": t.enums}
                      for t in state.templates.values()]}


@_sandbox_endpoint
def grant_subscription(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    openid, template_id = _text(body, "openid"), _text(body, "template_id")
    if body.get("revoke"):
        state.revoke(openid, template_id)
        return {"openid": openid, "template_id": template_id, "count": 0, "long_term": False}
    long_term = body.get("long_term", False)
    count = body.get("count", 0 if long_term else 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 0 or not isinstance(long_term, bool):
        raise ValueError("count 应为非负整数，long_term 应为布尔值")
    credit = state.grant(openid, template_id, count=count, long_term=long_term)
    return {"openid": openid, "template_id": template_id, "count": credit.count, "long_term": credit.long_term}


@_sandbox_endpoint
def list_subscriptions(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    openid = _text(body, "openid")
    return {"items": [{"template_id": tid, "count": c.count, "long_term": c.long_term}
                      for tid, c in state.credits(openid).items()]}


@_sandbox_endpoint
def list_messages(state: SandboxState, query: dict[str, Any]) -> dict[str, Any]:
    kind = query.get("kind") or None
    if kind not in (None, "subscribe", "customer_service"):
        raise ValueError("kind 只能是 subscribe 或 customer_service")
    try:
        after = int(query.get("after", 0))
    except ValueError:
        raise ValueError("after 应为整数") from None
    return {"items": state.messages(touser=query.get("touser") or None, kind=kind, after=after)}


@_sandbox_endpoint
def add_fault(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    errcode, delay, count = body.get("errcode"), body.get("delay", 0), body.get("count", 1)
    if errcode is not None and (not isinstance(errcode, int) or isinstance(errcode, bool)):
        raise ValueError("errcode 应为整数")
    if not isinstance(delay, (int, float)) or not isinstance(count, int):
        raise ValueError("delay 应为秒数，count 应为整数")
    path = state.add_fault(_text(body, "endpoint"), errcode=errcode, errmsg=_text(body, "errmsg", required=False),
                           delay=float(delay), count=count)
    return {"endpoint": path, "errcode": errcode, "delay": delay, "count": count}


@_sandbox_endpoint
def add_risky_word(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    """Make msg_sec_check call every text containing `word` risky (until /sandbox/reset)."""
    state.add_risky_word(_text(body, "word"))
    return {"risky_words": sorted(state.risky_words)}


@_sandbox_endpoint
def rotate_token(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    state.rotate_token()
    return {"rotated": True}


@_sandbox_endpoint
def advance_clock(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    seconds = body.get("advance")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise ValueError("advance 应为秒数")
    state.advance(float(seconds))
    return {"now": state.stats()["now"]}


@_sandbox_endpoint
def stats(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    return state.stats()


@_sandbox_endpoint
def reset(state: SandboxState, body: dict[str, Any]) -> dict[str, Any]:
    state.reset()
    return {"reset": True}


def create_sandbox_app(state: SandboxState) -> web.Application:
    """The sandbox as an aiohttp app; several apps may share one state (standalone port and /wechat-sandbox/)."""
    app = web.Application()
    app[STATE] = state
    app.router.add_routes([
        web.post("/cgi-bin/stable_token", stable_token),
        web.get("/cgi-bin/token", plain_token),
        web.get("/sns/jscode2session", jscode2session),
        web.post("/cgi-bin/message/subscribe/send", subscribe_send),
        web.post("/cgi-bin/message/custom/send", custom_send),
        web.post("/wxa/getwxacodeunlimit", wxacode_unlimit),
        web.post("/wxa/business/getuserphonenumber", user_phone_number),
        web.post("/sandbox/login-code", login_code),
        web.post("/sandbox/phone-code", phone_code),
        web.post("/wxa/msg_sec_check", msg_sec_check),
        web.post("/sandbox/login-code", login_code),
        web.post("/sandbox/voip/join", join_voip),
        web.get("/sandbox/templates", list_templates),
        web.post("/sandbox/templates", add_template),
        web.get("/sandbox/subscriptions", list_subscriptions),
        web.post("/sandbox/subscriptions", grant_subscription),
        web.get("/sandbox/messages", list_messages),
        web.post("/sandbox/faults", add_fault),
        web.post("/sandbox/risky-words", add_risky_word),
        web.post("/sandbox/rotate-token", rotate_token),
        web.post("/sandbox/clock", advance_clock),
        web.get("/sandbox/stats", stats),
        web.post("/sandbox/reset", reset),
    ])
    return app


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: WeChat URLs carry the AppSecret, login codes and access tokens."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.3fs", request.method, request.path, response.status, time)
