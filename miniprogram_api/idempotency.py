"""`Idempotency-Key` on POSTs that create or transition: a retried request gets the first answer again,
never a second referral or a second transition."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp import web
from tortoise.exceptions import IntegrityError

from accounts.principal import Principal
from errors import Conflict, DomainError, InvalidInput
from miniprogram_api.middleware import error_body
from models import IdempotencyRecord
from timeutil import utcnow

HEADER = "Idempotency-Key"
IN_PROGRESS_TIMEOUT = 120  # seconds: longer than any request may take


async def idempotent(request: web.Request, principal: Principal,
                     run: Callable[[], Awaitable[web.Response]]) -> web.Response:
    key = request.headers.get(HEADER, "").strip()
    if not key:
        return await run()
    if len(key) > 128:
        raise InvalidInput("Idempotency-Key 过长（最多 128 个字符）", code="INVALID_IDEMPOTENCY_KEY")
    body = await request.read()
    fingerprint = hashlib.sha256(f"{request.method} {request.path}\n".encode() + body).hexdigest()
    try:
        record = await IdempotencyRecord.create(account_id=principal.account_id, key=key, fingerprint=fingerprint)
    except IntegrityError:
        if not await _abandoned(principal, key):
            return await _replay(principal, key, fingerprint)
        # The process that took this key died mid-request: the key is free again.
        try:
            record = await IdempotencyRecord.create(account_id=principal.account_id, key=key,
                                                    fingerprint=fingerprint)
        except IntegrityError:
            return await _replay(principal, key, fingerprint)
    try:
        response = await run()
    except DomainError as exc:
        response = error_body(exc.status, exc.code, exc.message, exc.detail)
    except BaseException:
        # A crash is not an answer: let the client's retry run the command again.
        await IdempotencyRecord.filter(id=record.id).delete()
        raise
    await IdempotencyRecord.filter(id=record.id).update(status=response.status, body=response.text or "")
    return response


async def _abandoned(principal: Principal, key: str) -> bool:
    """Delete an in-progress record older than any request can run (its process crashed); True if deleted."""
    cutoff = utcnow() - timedelta(seconds=IN_PROGRESS_TIMEOUT)
    return bool(await IdempotencyRecord.filter(account_id=principal.account_id, key=key, status=None,
                                               created_at__lt=cutoff).delete())


async def _replay(principal: Principal, key: str, fingerprint: str) -> web.Response:
    record = await IdempotencyRecord.get(account_id=principal.account_id, key=key)
    if record.fingerprint != fingerprint:
        raise InvalidInput("该 Idempotency-Key 已用于另一个请求", code="IDEMPOTENCY_KEY_REUSED")
    if record.status is None:
        raise Conflict("相同的请求正在处理中，请稍后再试", code="IDEMPOTENCY_IN_PROGRESS")
    response = web.Response(text=record.body, status=record.status, content_type="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    return response
