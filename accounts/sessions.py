"""Sessions: issue an access + refresh pair, rotate refresh tokens, detect reuse, log out."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tortoise.transactions import in_transaction

from accounts.principal import Principal, load_principal
from accounts.revocation import mark_revoked
from accounts.tokens import issue_access_token, new_secret_token, token_hash
from accounts.views import account_view
from errors import Unauthenticated
from kv import KV
from models import RefreshToken, WeChatAccount
from settings import Settings

# last_login_at is written when it is older than this: it says when someone last came, not every login (a
# mini-program logs in at each launch), and a login that writes nothing else need not write.
LAST_LOGIN_PRECISION = timedelta(minutes=10)


def _now() -> datetime:
    return datetime.now(UTC)


async def _new_refresh(settings: Settings, account: WeChatAccount, family: uuid.UUID) -> str:
    token = new_secret_token("rt")
    await RefreshToken.create(account=account, family=family, token_hash=token_hash(token),
                              expires_at=_now() + timedelta(seconds=settings.refresh_ttl))
    return token


async def _session(settings: Settings, account: WeChatAccount, family: uuid.UUID) -> dict:
    principal = await load_principal(account)
    access, _ = issue_access_token(settings.jwt_secret, account.public_id, settings.access_ttl,
                                   kind=principal.kind, session=family)
    refresh = await _new_refresh(settings, account, family)
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": settings.access_ttl,
        "refresh_token": refresh,
        "account": await account_view(account, principal),
    }


async def issue_session(settings: Settings, account: WeChatAccount) -> dict:
    """A new session (new refresh family): what every login endpoint answers."""
    now = _now()
    if account.last_login_at is None or now - account.last_login_at >= LAST_LOGIN_PRECISION:
        account.last_login_at = now
        await account.save(update_fields=["last_login_at", "updated_at"])
    return await _session(settings, account, uuid.uuid4())


async def refresh_session(settings: Settings, kv: KV, refresh_token: str) -> dict:
    """Rotate: the presented token is spent and a new one of the same family issued. Presenting a spent
    token again means it leaked: the whole family is revoked, its access tokens included."""
    now = _now()
    row = await RefreshToken.get_or_none(token_hash=token_hash(refresh_token))
    if row is None:
        raise Unauthenticated("刷新凭证无效，请重新登录", code="REFRESH_INVALID")
    if row.revoked_at is not None:
        raise Unauthenticated("登录已失效，请重新登录", code="REFRESH_REVOKED")
    if row.expires_at <= now:
        raise Unauthenticated("登录已过期，请重新登录", code="REFRESH_EXPIRED")
    async with in_transaction():
        # Conditional update: of two concurrent refreshes with the same token, exactly one spends it.
        spent = await RefreshToken.filter(id=row.id, used_at=None, revoked_at=None).update(used_at=now)
        if not spent:
            await RefreshToken.filter(family=row.family, revoked_at=None).update(revoked_at=now)
    if not spent:
        await mark_revoked(kv, [row.family], settings.access_ttl)
        raise Unauthenticated("检测到登录凭证被重复使用，为保护账号安全已退出所有相关登录，请重新登录",
                              code="REFRESH_REUSED")
    account = await WeChatAccount.get(id=row.account_id)  # type: ignore[attr-defined]
    return await _session(settings, account, row.family)


async def logout(settings: Settings, kv: KV, principal: Principal, refresh_token: str | None) -> int:
    """End the caller's session and the one of the presented refresh token, or, without a refresh token,
    every session of the account; returns how many refresh links were revoked. Every access token issued in
    those sessions is refused from then on (accounts.revocation)."""
    query = RefreshToken.filter(account_id=principal.account_id, revoked_at=None)
    if refresh_token:
        row = await RefreshToken.get_or_none(token_hash=token_hash(refresh_token),
                                             account_id=principal.account_id)
        if row is None:
            raise Unauthenticated("刷新凭证无效", code="REFRESH_INVALID")
        families = {row.family} | ({principal.session_id} if principal.session_id else set())
        query = query.filter(family__in=list(families))
    else:
        families = set(await RefreshToken.filter(account_id=principal.account_id, revoked_at=None)
                       .distinct().values_list("family", flat=True))
        if principal.session_id:
            families.add(principal.session_id)
    revoked = await query.update(revoked_at=_now())
    await mark_revoked(kv, families, settings.access_ttl)
    return revoked
