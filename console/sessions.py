"""Console login tickets and sessions, kept in the shared KV store (Redis in production) so that every web
process sees them and logging out or a deactivation takes effect everywhere at once.

A ticket is what the login page shows as a QR code: valid TICKET_TTL seconds, bound to the browser that asked
for it by a secret nonce (a cookie), confirmed once by a staff member's mini-program and redeemed once by that
browser for a session. Only hashes of tickets, nonces and session ids are used as keys."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from accounts.principal import Principal
from errors import Forbidden, Gone
from kv import KV

TICKET_TTL = 120  # the login QR is valid two minutes
TICKET_PREFIX = "ct_"
_TICKET_KEY = "console:ticket:"
_REDEEMED_KEY = "console:ticket-redeemed:"
_SESSION_KEY = "console:session:"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class Ticket:
    ticket: str  # what the QR code carries
    nonce: str  # the browser's secret (cookie); redeeming needs it


async def issue_ticket(kv: KV) -> Ticket:
    ticket = Ticket(TICKET_PREFIX + secrets.token_urlsafe(24), secrets.token_urlsafe(24))
    await kv.set(_TICKET_KEY + _digest(ticket.ticket),
                 json.dumps({"nonce": _digest(ticket.nonce), "account": None}), ex=TICKET_TTL)
    return ticket


async def _read(kv: KV, ticket: str) -> dict | None:
    raw = await kv.get(_TICKET_KEY + _digest(ticket))
    return json.loads(raw) if raw else None


async def confirm_ticket(kv: KV, principal: Principal, ticket: str) -> None:
    """The staff member who scanned `ticket` vouches for the browser showing it (once, before it expires)."""
    principal.require_staff()
    key = _TICKET_KEY + _digest(ticket.strip())
    state = await _read(kv, ticket.strip()) if ticket.startswith(TICKET_PREFIX) else None
    if state is None:
        raise Gone("登录二维码已过期，请刷新电脑上的登录页后重新扫码", code="CONSOLE_TICKET_EXPIRED")
    if state["account"] is not None:
        raise Gone("该登录二维码已被使用，请刷新电脑上的登录页后重新扫码", code="CONSOLE_TICKET_USED")
    # Claimed with SET NX, so of two concurrent confirmations exactly one wins.
    if not await kv.set(key + ":confirmed", "1", ex=TICKET_TTL, nx=True):
        raise Gone("该登录二维码已被使用，请刷新电脑上的登录页后重新扫码", code="CONSOLE_TICKET_USED")
    remaining = await kv.ttl(key)
    state["account"] = principal.account_id
    await kv.set(key, json.dumps(state), ex=max(1.0, remaining or 1.0))


async def ticket_state(kv: KV, ticket: str, nonce: str) -> str:
    """pending | confirmed | expired, as the browser holding `nonce` may learn it."""
    state = await _read(kv, ticket)
    if state is None or not same_secret(state["nonce"], _digest(nonce)):
        return "expired"
    return "pending" if state["account"] is None else "confirmed"


async def redeem_ticket(kv: KV, ticket: str, nonce: str) -> int:
    """The account that confirmed the ticket, once, to the browser that asked for it."""
    state = await _read(kv, ticket)
    if state is None or not same_secret(state["nonce"], _digest(nonce)):
        raise Gone("登录二维码已过期，请重新扫码", code="CONSOLE_TICKET_EXPIRED")
    if state["account"] is None:
        raise Forbidden("尚未在小程序中确认登录", code="CONSOLE_TICKET_PENDING")
    if not await kv.set(_REDEEMED_KEY + _digest(ticket), "1", ex=TICKET_TTL, nx=True):
        raise Gone("该登录二维码已被使用，请重新扫码", code="CONSOLE_TICKET_USED")
    await kv.delete(_TICKET_KEY + _digest(ticket))
    return int(state["account"])


def login_form_token(secret: str, nonce: str) -> str:
    """The CSRF token of the login page's forms (before there is a session): bound to the browser's nonce."""
    return hmac.new(secret.encode(), f"console-login\0{nonce}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Session:
    sid: str
    account_id: int
    csrf: str
    created: float


async def open_session(kv: KV, account_id: int, *, idle: int) -> Session:
    session = Session(secrets.token_urlsafe(32), account_id, secrets.token_urlsafe(32), time.time())
    await _store(kv, session, idle)
    return session


async def _store(kv: KV, session: Session, idle: int) -> None:
    await kv.set(_SESSION_KEY + _digest(session.sid),
                 json.dumps({"account": session.account_id, "csrf": session.csrf, "created": session.created}),
                 ex=idle)


async def resume_session(kv: KV, sid: str, *, idle: int, max_age: int) -> Session | None:
    """The live session of cookie value `sid`, its idle clock restarted; None when unknown, idle too long or
    past its absolute lifetime (then it is removed)."""
    if not sid or len(sid) > 128:
        return None
    raw = await kv.get(_SESSION_KEY + _digest(sid))
    if raw is None:
        return None
    data = json.loads(raw)
    session = Session(sid, int(data["account"]), data["csrf"], float(data["created"]))
    if time.time() - session.created > max_age:
        await end_session(kv, sid)
        return None
    await _store(kv, session, idle)
    return session


async def end_session(kv: KV, sid: str) -> None:
    await kv.delete(_SESSION_KEY + _digest(sid))


def csrf_matches(session: Session, presented: str | None) -> bool:
    return bool(presented) and same_secret(session.csrf, presented or "")
