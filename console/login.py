"""Signing in to the console: the login page's one-time QR code (confirmed from the mini-program), the HIS
launch, the demo accounts of the embedded sandbox, and signing out."""

from __future__ import annotations

import asyncio

from aiohttp import web

from accounts.login import resolve_login_code
from accounts.principal import load_principal
from appkeys import KV_STORE, SETTINGS, WECHAT, WECHAT_SANDBOX
from console import sessions
from console.page import (
    LOGIN_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    clear_cookie,
    redirect,
    render,
    set_login_cookie,
    set_session_cookie,
    user_of,
)
from directory.seed import demo_accounts
from errors import DomainError, InvalidInput, TooManyRequests
from his.launch import MAX_TOKEN, redeem_launch_token
from kv.limits import within_limit
from qr.render import render_svg

routes = web.RouteTableDef()


def _login_cookie(request: web.Request) -> tuple[str, str]:
    ticket, _, nonce = request.cookies.get(LOGIN_COOKIE, "").partition(".")
    return ticket, nonce


def inline_svg(content: str) -> str:
    """A QR code as SVG markup to put in the page itself (no data: URL, which the CSP would refuse)."""
    svg = render_svg(content, box_size=10).decode()
    return svg[svg.index("<svg"):]


def sandbox_mounted(request: web.Request) -> bool:
    """Embedded mode: the WeChat sandbox stands in for WeChat, so demo people may sign in without a phone."""
    return WECHAT_SANDBOX in request.config_dict


# New login tickets per client address and minute: enough for a desk PC refreshing, too few to fill the store.
TICKETS_PER_MINUTE = 30


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    kv = request.config_dict[KV_STORE]
    if not await within_limit(kv, "console-ticket", request.remote or "-", limit=TICKETS_PER_MINUTE, window=60):
        raise TooManyRequests("登录页面刷新过于频繁，请一分钟后再试", code="CONSOLE_LOGIN_RATE_LIMITED")
    ticket = await sessions.issue_ticket(kv)
    qr = await asyncio.get_running_loop().run_in_executor(None, inline_svg, ticket.ticket)
    demo = await demo_accounts() if sandbox_mounted(request) else []
    settings = request.config_dict[SETTINGS]
    response = render(request, "login.html", ticket=ticket.ticket, qr_svg=qr, ttl=sessions.TICKET_TTL,
                      demo_accounts=demo, login_csrf=sessions.login_form_token(settings.jwt_secret, ticket.nonce),
                      error=request.query.get("error", ""))
    set_login_cookie(request, response, f"{ticket.ticket}.{ticket.nonce}")
    return response


@routes.get("/login/status")
async def login_status(request: web.Request) -> web.Response:
    """What the login page polls: pending until the mini-program confirms, then confirmed; or expired."""
    ticket, nonce = _login_cookie(request)
    state = await sessions.ticket_state(request.config_dict[KV_STORE], ticket, nonce) if ticket else "expired"
    return web.json_response({"state": state})


async def _start_session(request: web.Request, account_id: int, location: str = PREFIX + "/") -> web.Response:
    settings = request.config_dict[SETTINGS]
    session = await sessions.open_session(request.config_dict[KV_STORE], account_id,
                                          idle=settings.console_idle_timeout)
    response = redirect(location)
    set_session_cookie(request, response, session.sid)
    clear_cookie(response, LOGIN_COOKIE)
    return response


@routes.get("/login/complete")
async def login_complete(request: web.Request) -> web.Response:
    """The browser that showed the QR code takes the session the scan vouched for."""
    ticket, nonce = _login_cookie(request)
    try:
        account_id = await sessions.redeem_ticket(request.config_dict[KV_STORE], ticket, nonce)
    except DomainError as exc:
        return redirect(PREFIX + "/login", exc.message)
    return await _start_session(request, account_id)


@routes.post("/login/demo")
async def login_demo(request: web.Request) -> web.Response:
    """Embedded mode only: the sandbox signs the chosen demo person in to WeChat and confirms the ticket for them,
    exactly as their mini-program would."""
    if not sandbox_mounted(request):
        raise web.HTTPNotFound()
    ticket, nonce = _login_cookie(request)
    form = await request.post()
    expected = sessions.login_form_token(request.config_dict[SETTINGS].jwt_secret, nonce)
    if not ticket or not sessions.same_secret(expected, str(form.get("csrf_token", ""))):
        return render(request, "error.html", status=403, title="请求已被拒绝",
                      message="登录页已过期或请求来源不明，请刷新登录页后重试。")
    openid = str(form.get("openid", ""))
    if openid not in {a["openid"] for a in await demo_accounts()}:
        raise InvalidInput("请选择一个演示账号", code="DEMO_ACCOUNT_UNKNOWN")
    code = request.config_dict[WECHAT_SANDBOX].mint_login_code(openid)
    account = await resolve_login_code(request.config_dict[WECHAT], code)
    await sessions.confirm_ticket(request.config_dict[KV_STORE], await load_principal(account), ticket)
    return redirect(PREFIX + "/login/complete")


@routes.get("/his-launch")
async def his_launch(request: web.Request) -> web.Response:
    """Single sign-on from the HIS: it opens /console/his-launch?launch_token=<its one-time JWT>."""
    return await _launch(request, request.query.get("launch_token", ""))


@routes.post("/his-launch")
async def his_launch_form(request: web.Request) -> web.Response:
    """The same, for a HIS that posts a form (the token then stays out of URLs and access logs)."""
    return await _launch(request, str((await request.post()).get("launch_token", "")))


async def _launch(request: web.Request, token: str) -> web.Response:
    if not token or len(token) > MAX_TOKEN:
        return redirect(PREFIX + "/login", "HIS 登录凭证缺失或格式不正确")
    try:
        launch = await redeem_launch_token(request.config_dict[KV_STORE], token)
    except DomainError as exc:
        return redirect(PREFIX + "/login", exc.message)
    return await _start_session(request, launch.account.id)


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    user = user_of(request)
    await sessions.end_session(request.config_dict[KV_STORE], user.session.sid)
    response = redirect(PREFIX + "/login", "已退出登录")
    clear_cookie(response, SESSION_COOKIE)
    return response
