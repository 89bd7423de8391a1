"""redis.asyncio behind the KV interface; every key and channel carries the installation's prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as redis
from redis.exceptions import LockError

from kv import LockNotAcquired

# Connections per process. Past that, a caller waits (up to the socket timeout) for one to come free instead of
# failing at once, which is redis-py's default: a burst of requests must queue, not answer 500 (long-lived
# subscriptions, such as the outbox and directory listeners, hold one each).
MAX_CONNECTIONS = 100
TIMEOUT = 5


class RedisKV:
    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=TIMEOUT,
                                                     socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        self._redis = redis.Redis.from_pool(pool)

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def get(self, key: str) -> bytes | None:
        return await self._redis.get(self._k(key))

    async def set(self, key: str, value: bytes | str, *, ex: float | None = None, nx: bool = False) -> bool:
        px = int(ex * 1000) if ex else None
        return bool(await self._redis.set(self._k(key), value, px=px, nx=nx))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._k(key))

    async def incr(self, key: str, *, ex: float | None = None) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._k(key))
            if ex:
                pipe.pexpire(self._k(key), int(ex * 1000), nx=True)
            result = await pipe.execute()
        return int(result[0])

    async def ttl(self, key: str) -> float | None:
        ms = await self._redis.pttl(self._k(key))
        return None if ms < 0 else ms / 1000

    @asynccontextmanager
    async def lock(self, name: str, *, timeout: float, wait: float) -> AsyncIterator[None]:
        lock = self._redis.lock(self._k("lock:" + name), timeout=timeout, blocking_timeout=wait)
        if not await lock.acquire():
            raise LockNotAcquired(name)
        try:
            yield
        finally:
            try:
                await lock.release()
            except LockError:
                pass  # expired while held: another holder may already own it

    async def publish(self, channel: str, message: str) -> None:
        await self._redis.publish(self._k(channel), message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[str]]:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self._k(channel))

        async def messages() -> AsyncIterator[str]:
            while True:
                item = await pubsub.get_message(timeout=1.0)
                if item and item.get("type") == "message":
                    data = item["data"]
                    yield data.decode() if isinstance(data, bytes) else data

        try:
            yield messages()
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def delete_prefix(self) -> None:
        """Remove every key of this prefix (used by tests that own a prefix)."""
        async for key in self._redis.scan_iter(match=self.prefix + "*", count=500):
            await self._redis.delete(key)

    async def close(self) -> None:
        await self._redis.aclose()
