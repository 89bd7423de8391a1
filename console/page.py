"""What every console page shares: templates, static files with cache headers, the session and CSRF
middleware, security headers, and domain errors shown as pages."""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jinja2
from aiohttp import web

from accounts.principal import PRINCIPAL, Principal, load_principal
from appkeys import KV_STORE, SETTINGS
from console import sessions
from directory import cache
from errors import DomainError
from models import Role, WeChatAccount
from models.people import ROLE_NAMES
from timeutil import china_time

log = logging.getLogger("referral_cloud.console")

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
PREFIX = "/console"
SESSION_COOKIE = "rc_console"
LOGIN_COOKIE = "rc_console_login"
# Only the app's own origin, for everything; no inline script or style.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
       "connect-src 'self'; media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
STATIC_CACHE = "public, max-age=31536000, immutable"  # URLs carry the file's hash
STATIC_CACHE_UNVERSIONED = "public, max-age=300"
# Paths reachable without a session.
PUBLIC_PATHS = ("/console/login", "/console/static/", "/console/his-launch")


@dataclass(frozen=True)
class ConsoleUser:
    principal: Principal
    session: sessions.Session
    institution_name: str

    def has(self, *roles: str) -> bool:
        return bool(self.principal.roles.intersection(roles))


USER: web.RequestKey[ConsoleUser] = web.RequestKey("console_user")
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("console_templates", jinja2.Environment)
STATIC_HASHES: web.AppKey[dict] = web.AppKey("console_static_hashes", dict)


def static_hashes() -> dict[str, str]:
    return {str(p.relative_to(STATIC_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()[:12]
            for p in STATIC_DIR.rglob("*") if p.is_file()}


def _china(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return china_time(value).strftime("%Y-%m-%d %H:%M")


def environment(hashes: dict[str, str]) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.globals["static"] = lambda name: f"{PREFIX}/static/{name}?v={hashes[name]}"
    env.globals["ROLE_NAMES"] = {str(k): v for k, v in ROLE_NAMES.items()}
    env.filters["china"] = _china
    return env


def render(request: web.Request, template: str, *, status: int = 200, **context) -> web.Response:
    user = request.get(USER)
    context.setdefault("user", user)
    context.setdefault("csrf_token", user.session.csrf if user else "")
    context.setdefault("path", request.path)
    context.setdefault("nav", nav_for(user) if user else [])
    context.setdefault("flash", request.query.get("msg", ""))
    context.setdefault("flash_bad", request.query.get("tone") == "bad")
    html = request.config_dict[TEMPLATES].get_template(template).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def redirect(location: str, message: str = "", *, bad: bool = False) -> web.Response:
    """303 to `location` (a plain response, so cookies can be set on it), with a one-line notice to show."""
    if message:
        location += ("&" if "?" in location else "?") + "msg=" + quote(message) + ("&tone=bad" if bad else "")
    return web.Response(status=303, headers={"Location": location})


@dataclass(frozen=True)
class ActionForm:
    """How one action's form looks in the detail page's action block (templates/_actions.html)."""

    button: str
    title: str = ""
    confirm: str = ""  # asked in the browser before the form is sent
    danger: bool = False


async def acted(request: web.Request, act: Callable[[], Awaitable[web.Response]],
                page: Callable[..., Awaitable[web.Response]]) -> web.Response:
    """Run a detail page's action form; a domain error (the record changed meanwhile, a refused step, a bad
    field) shows the detail page again, as it now stands, with the command's own message on top."""
    try:
        return await act()
    except DomainError as exc:
        return await page(request, status=exc.status, flash=exc.message, flash_bad=True)


def user_of(request: web.Request, *roles: str) -> ConsoleUser:
    """The signed-in staff member; with `roles`, one of them is required (as the API requires)."""
    user = request[USER]
    if roles:
        user.principal.require_role(*roles)
    return user


async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise web.HTTPNotFound()
    hashes = request.config_dict[STATIC_HASHES]
    etag = f'"{hashes.get(name, "")}"'
    versioned = request.query.get("v") == hashes.get(name)
    headers = {"Cache-Control": STATIC_CACHE if versioned else STATIC_CACHE_UNVERSIONED, "ETag": etag,
               "X-Content-Type-Options": "nosniff"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    charset = "utf-8" if content_type.startswith(("text/", "application/javascript")) else None
    return web.Response(body=path.read_bytes(), content_type=content_type, charset=charset, headers=headers)


def _session_cookie_options(request: web.Request) -> dict:
    secure = request.config_dict[SETTINGS].public_url.startswith("https://") or request.secure
    return {"path": PREFIX + "/", "httponly": True, "samesite": "Lax", "secure": secure}


def set_session_cookie(request: web.Request, response: web.StreamResponse, sid: str) -> None:
    response.set_cookie(SESSION_COOKIE, sid, **_session_cookie_options(request))


def set_login_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(LOGIN_COOKIE, value, max_age=sessions.TICKET_TTL + 60,
                        **_session_cookie_options(request))


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path=PREFIX + "/")


async def _signed_in(request: web.Request) -> ConsoleUser | None:
    settings = request.config_dict[SETTINGS]
    kv = request.config_dict[KV_STORE]
    session = await sessions.resume_session(kv, request.cookies.get(SESSION_COOKIE, ""),
                                            idle=settings.console_idle_timeout, max_age=settings.console_session_max)
    if session is None:
        return None
    account = await WeChatAccount.get_or_none(id=session.account_id).select_related("staff")
    principal = await load_principal(account) if account is not None else None
    if principal is None or principal.staff_id is None:
        # Deactivated or removed since: the session ends here, server-side.
        await sessions.end_session(kv, session.sid)
        return None
    institution = await cache.institution(principal.institution_id)
    return ConsoleUser(principal, session, institution.name)


def _public(path: str) -> bool:
    return any(path == p or path.startswith(p) for p in PUBLIC_PATHS)


async def _guard(request: web.Request, handler) -> web.StreamResponse:
    if request.path == PREFIX:
        return redirect(PREFIX + "/")
    if _public(request.path):
        return await handler(request)
    user = await _signed_in(request)
    if user is None:
        if request.method in ("GET", "HEAD"):
            response = redirect(f"{PREFIX}/login", "请先登录")
        else:
            response = render(request, "error.html", status=401, title="请先登录",
                              message="登录已失效，请重新扫码登录后再操作。")
        clear_cookie(response, SESSION_COOKIE)
        return response
    request[USER] = user
    request[PRINCIPAL] = user.principal
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        presented = request.headers.get("X-CSRF-Token")
        if presented is None and request.content_type in ("application/x-www-form-urlencoded",
                                                          "multipart/form-data"):
            presented = (await request.post()).get("csrf_token")
        if not sessions.csrf_matches(user.session, presented if isinstance(presented, str) else None):
            return render(request, "error.html", status=403, title="请求已被拒绝",
                          message="页面已过期或请求来源不明（缺少安全校验码），请刷新页面后重试。")
    return await handler(request)


@web.middleware
async def console_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        response = await _guard(request, handler)
    except DomainError as exc:
        response = render(request, "error.html", status=exc.status, title="未能完成操作", message=exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {404: "未找到该页面或记录", 405: "不支持该请求方式"}.get(exc.status, "请求未能完成")
        response = render(request, "error.html", status=exc.status, title=message, message=message)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def nav_for(user: ConsoleUser) -> list[tuple[str, str]]:
    """The sections a staff member's roles open, in the order of the navigation bar."""
    items = [(f"{PREFIX}/", "首页")]
    if user.has(Role.DOCTOR, Role.APPROVER, Role.EXPERT, Role.ADMISSION_CLERK, Role.ADMIN):
        items.append((f"{PREFIX}/referrals", "转诊工作台"))
    if user.has(Role.DOCTOR, Role.EXPERT, Role.APPROVER):
        items.append((f"{PREFIX}/consultations", "会诊工作台"))
    if user.has(Role.ADMISSION_CLERK):
        items.append((f"{PREFIX}/desk", "住院处"))
    if user.has(Role.ADMIN, Role.APPROVER):
        items.append((f"{PREFIX}/admin/beds", "预留床位"))
    if user.has(Role.ADMIN, Role.CONSORTIUM_ADMIN):
        items.append((f"{PREFIX}/stats", "统计"))
    if user.has(Role.ADMIN):
        items += [(f"{PREFIX}/admin/staff", "人员"), (f"{PREFIX}/admin/departments", "科室"),
                  (f"{PREFIX}/admin/policy", "转诊策略"), (f"{PREFIX}/admin/jobs", "后台任务"),
                  (f"{PREFIX}/admin/audit", "审计日志")]
    return items
