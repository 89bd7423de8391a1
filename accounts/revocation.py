"""Whether a session has ended. A session is one refresh-token family: every access token issued in it
carries the family as its `sid` claim, and logout or a detected refresh-token reuse revokes the family.

Choice: the record of truth is the family's rows in `refresh_token` (revoked_at set), and every request
asks about its token's family through the KV store (Redis in production, the in-process stand-in in
embedded mode), so a request costs one KV GET and the database is read once per family per CACHE_ACTIVE
seconds. Revocation writes "revoked" over the cached answer, for as long as any access token of the family
can still be valid (ACCESS_TTL plus the verifier's leeway). The cache never needs to be right on its own: if
the KV store loses the key, the next request reads the database again. A cached "active" is written with NX,
so a request that read the database just before a logout cannot overwrite the logout's "revoked". The
alternatives were worse: a per-request database read of the family, or revoking only the one access token
presented at logout (what the app did before: the session's other access tokens kept answering until they
expired).

Redis down: the answer comes from the database alone (losing Redis must not stop the platform), and a logout
still revokes in the database. An "active" cached before the outage can outlive a logout made during it by at
most CACHE_ACTIVE seconds once Redis is back."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from redis.exceptions import RedisError

from accounts.tokens import LEEWAY
from kv import KV
from models import RefreshToken

log = logging.getLogger("referral_cloud.accounts.revocation")
KV_DOWN = (RedisError, OSError)  # the store is unreachable: fall back to the database

ACTIVE = b"active"
REVOKED = b"revoked"
CACHE_ACTIVE = 60.0  # seconds a "not revoked" answer is reused; revocation replaces it at once


def _key(family: uuid.UUID | str) -> str:
    return f"auth:session:{family}"


async def is_revoked(kv: KV, family: uuid.UUID) -> bool:
    """Whether the session `family` has ended (one KV read; the database on a cache miss)."""
    try:
        cached = await kv.get(_key(family))
    except KV_DOWN as exc:
        log.warning("session check without the KV store (%s): reading the database", type(exc).__name__)
        return await RefreshToken.filter(family=family, revoked_at__isnull=False).exists()
    if cached is not None:
        return cached == REVOKED
    revoked = await RefreshToken.filter(family=family, revoked_at__isnull=False).exists()
    try:
        await kv.set(_key(family), REVOKED if revoked else ACTIVE, ex=CACHE_ACTIVE, nx=True)
    except KV_DOWN:
        pass  # the answer stands; the next request asks again
    return revoked


async def mark_revoked(kv: KV, families: Iterable[uuid.UUID], access_ttl: int) -> None:
    """Publish revocations already written to the database; every access token of these sessions is refused
    from now on, on every process."""
    try:
        for family in set(families):
            await kv.set(_key(family), REVOKED, ex=access_ttl + LEEWAY + 1)
    except KV_DOWN as exc:
        # The database already says so; requests read it while the store is down.
        log.warning("session revocation not published to the KV store (%s)", type(exc).__name__)
