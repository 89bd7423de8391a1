"""Key-value store, locks and pub/sub: Redis in production, an in-process stand-in in embedded mode.

Both implement exactly the operations the code uses, so code written against `KV` runs on either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from typing import Protocol


class LockNotAcquired(Exception):
    """Another holder kept the lock for longer than we were willing to wait."""


class KV(Protocol):
    prefix: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes | str, *, ex: float | None = None, nx: bool = False) -> bool:
        """Set `key`; with `nx` only if absent. Returns whether it was written."""

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, *, ex: float | None = None) -> int:
        """Increment a counter; `ex` sets its expiry when it is created."""

    async def ttl(self, key: str) -> float | None:
        """Seconds left before `key` expires, None when absent or without expiry."""

    def lock(self, name: str, *, timeout: float, wait: float) -> AsyncContextManager[None]:
        """Mutual exclusion across every process sharing the store; raises LockNotAcquired."""

    async def publish(self, channel: str, message: str) -> None: ...

    def subscribe(self, channel: str) -> AsyncContextManager[AsyncIterator[str]]: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def connect(redis_url: str, prefix: str) -> KV:
    if redis_url:
        from kv.redis_store import RedisKV

        return RedisKV(redis_url, prefix)
    from kv.memory import MemoryKV

    return MemoryKV(prefix)
