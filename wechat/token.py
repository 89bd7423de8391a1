"""The access token shared by every process through the KV store, refreshed by one process at a time.

WeChat's access token uses the defaults; the HIS gateway keeps one per institution (his.auth) under its own key,
lock and label."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kv import KV, LockNotAcquired
from wechat.errors import WeChatUnavailable

log = logging.getLogger("referral_cloud.wechat")

TOKEN_KEY = "wechat:token"
LOCK_NAME = "wechat:token"
# Refresh this long before expiry, as WeChat itself renews 5 minutes early; in-flight calls keep a valid token.
REFRESH_MARGIN = 300.0
# How long a process reuses the token it last read before reading the store again (a busy chat makes a content
# check per message). A token another process replaced meanwhile is refused by WeChat and refreshed at once.
LOCAL_TTL = 5.0

# fetch(force_refresh) -> (token, expires_in)
Fetch = Callable[[bool], Awaitable[tuple[str, float]]]


def fingerprint(token: str) -> str:
    """A short digest that identifies a token in logs and status without revealing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CachedToken:
    token: str
    expires_at: float
    refresh_at: float

    def fresh(self, now: float) -> bool:
        return now < self.refresh_at


class SharedToken:
    """Reads the token from the KV store; when it is missing, due or rejected, exactly one process fetches."""

    def __init__(self, kv: KV, fetch: Fetch, *, lock_timeout: float, clock: Callable[[], float] = time.time,
                 key: str = TOKEN_KEY, lock_name: str = LOCK_NAME, label: str = "WeChat access token",
                 busy: Callable[[], Exception] | None = None) -> None:
        self._kv = kv
        self._fetch = fetch
        self._lock_timeout = lock_timeout
        self._clock = clock
        self._key = key
        self._lock_name = lock_name
        self._label = label
        self._busy = busy or (lambda: WeChatUnavailable("另一进程正在刷新 access_token，等待超时"))
        self._local: CachedToken | None = None
        self._local_until = 0.0

    async def load(self) -> CachedToken | None:
        raw = await self._kv.get(self._key)
        if raw is None:
            return None
        try:
            item = json.loads(raw)
            return CachedToken(item["token"], float(item["expires_at"]), float(item["refresh_at"]))
        except (ValueError, KeyError, TypeError):
            return None  # written by an incompatible version: treat as absent and fetch anew

    async def get(self) -> CachedToken:
        """A token that is not yet due for refresh."""
        now = self._clock()
        if self._local is not None and now < self._local_until and self._local.fresh(now):
            return self._local
        cached = await self.load()
        if cached is None or not cached.fresh(self._clock()):
            cached = await self.refresh()
        self._local, self._local_until = cached, self._clock() + LOCAL_TTL
        return cached

    async def refresh(self, rejected: str | None = None) -> CachedToken:
        """Fetch a new token under the shared lock, unless another process did so while we waited.

        `rejected` is a token the remote just refused (40001/42001): never hand it out again."""
        self._local = None
        try:
            async with self._kv.lock(self._lock_name, timeout=self._lock_timeout, wait=self._lock_timeout):
                cached = await self.load()
                if cached is not None and cached.token != rejected and cached.fresh(self._clock()):
                    return cached
                token, expires_in = await self._fetch(False)
                if token == rejected:
                    # WeChat still hands out the token it refuses (e.g. the secret was reset): force a new one.
                    token, expires_in = await self._fetch(True)
                return await self._store(token, expires_in)
        except LockNotAcquired:
            raise self._busy() from None

    async def _store(self, token: str, expires_in: float) -> CachedToken:
        now = self._clock()
        # Normally 5 minutes early; a very short lifetime is refreshed half-way instead of constantly.
        lead = min(REFRESH_MARGIN, expires_in / 2)
        cached = CachedToken(token, now + expires_in, now + expires_in - lead)
        payload = {"token": token, "expires_at": cached.expires_at, "refresh_at": cached.refresh_at}
        await self._kv.set(self._key, json.dumps(payload), ex=max(expires_in, 1.0))
        log.info("%s refreshed: fingerprint %s, expires in %ds", self._label, fingerprint(token), expires_in)
        return cached
