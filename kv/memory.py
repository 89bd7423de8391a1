"""In-process stand-in for Redis: one process, the same semantics for the operations we use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kv import LockNotAcquired


class MemoryKV:
    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._channels: dict[str, set[asyncio.Queue[str]]] = {}

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def set(self, key: str, value: bytes | str, *, ex: float | None = None, nx: bool = False) -> bool:
        if nx and self._live(key) is not None:
            return False
        raw = value.encode() if isinstance(value, str) else value
        self._data[key] = (raw, time.monotonic() + ex if ex else None)
        return True

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def incr(self, key: str, *, ex: float | None = None) -> int:
        current = self._live(key)
        if current is None:
            self._data[key] = (b"1", time.monotonic() + ex if ex else None)
            return 1
        value = int(current) + 1
        self._data[key] = (str(value).encode(), self._data[key][1])
        return value

    async def ttl(self, key: str) -> float | None:
        if self._live(key) is None:
            return None
        expires = self._data[key][1]
        return None if expires is None else expires - time.monotonic()

    @asynccontextmanager
    async def lock(self, name: str, *, timeout: float, wait: float) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        try:
            await asyncio.wait_for(lock.acquire(), wait)
        except TimeoutError:
            raise LockNotAcquired(name) from None
        try:
            yield
        finally:
            lock.release()

    async def publish(self, channel: str, message: str) -> None:
        for queue in list(self._channels.get(channel, ())):
            queue.put_nowait(message)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[str]]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._channels.setdefault(channel, set()).add(queue)

        async def messages() -> AsyncIterator[str]:
            while True:
                yield await queue.get()

        try:
            yield messages()
        finally:
            self._channels[channel].discard(queue)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()
