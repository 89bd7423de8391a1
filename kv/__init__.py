"""Key-value store, locks and pub/sub: Redis in production, an in-process stand-in in embedded mode.

Both implement exactly the operations the code uses, so code written against `KV` runs on either.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from typing import Protocol

log = logging.getLogger("referral_cloud.kv")


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


async def listen(kv: KV, channel: str, on_message: Callable[[], None], *, fallback: str,
                 retry_after: float = 1.0) -> None:
    """Call `on_message` for every message published on `channel`, until cancelled. A lost subscription (Redis
    restarting) is logged, naming the `fallback` that covers the gap, and made again."""
    await listen_messages(kv, channel, lambda _: on_message(), fallback=fallback, retry_after=retry_after,
                          retry_max=retry_after)


async def listen_messages(kv: KV, channel: str, on_message: Callable[[str], Awaitable[None] | None], *,
                          fallback: str, on_subscribed: Callable[[bool], Awaitable[None] | None] | None = None,
                          retry_after: float = 1.0, retry_max: float = 1.0) -> None:
    """Call `on_message(message)` for every message published on `channel`, until cancelled. A lost subscription
    is logged (naming the `fallback` that covers the gap) and made again, waiting `retry_after` seconds, doubled
    per failure up to `retry_max`. `on_subscribed(again)` runs each time the subscription stands, `again` being
    true after a loss: what was published meanwhile never arrives, the caller may catch up."""
    delay, lost = retry_after, False
    while True:
        try:
            async with kv.subscribe(channel) as messages:
                if lost:
                    log.info("subscription to %s is back", channel)
                delay = retry_after
                if on_subscribed is not None and inspect.isawaitable(done := on_subscribed(lost)):
                    await done
                async for message in messages:
                    if inspect.isawaitable(handled := on_message(message)):
                        await handled
        except Exception as exc:
            log.warning("subscription to %s lost (%s); %s until it is back", channel, type(exc).__name__, fallback)
            lost = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, retry_max)


async def stop(task: asyncio.Task) -> None:
    """Cancel a background task that talks to the store and wait until it has really stopped: redis-py can
    swallow a cancellation that lands mid-command (redis/redis-py#2028, #2551), so cancel again until it is done
    and shutdown never hangs."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def connect(redis_url: str, prefix: str) -> KV:
    if redis_url:
        from kv.redis_store import RedisKV

        return RedisKV(redis_url, prefix)
    from kv.memory import MemoryKV

    return MemoryKV(prefix)
