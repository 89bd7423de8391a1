"""A small in-memory LRU for rendered images: each image is made once, however many requests ask for it at once.

Keys name the content exactly (a digest of the token, or the slip code and mini-program page), so an entry never
goes stale and the cache can be shared by every app in the process. It is touched only from the event loop;
the rendering itself runs wherever the caller's ``produce`` puts it (an executor for CPU work)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable


class ImageCache:
    def __init__(self, *, max_items: int = 2048, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._pending: dict[str, asyncio.Task[bytes]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def peek(self, key: str) -> bytes | None:
        return self._items.get(key)

    async def get(self, key: str, produce: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached bytes for ``key``, else the result of ``produce()``, run once for concurrent callers."""
        cached = self._items.get(key)
        if cached is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return cached
        task = self._pending.get(key)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            self.misses += 1
            task = asyncio.ensure_future(produce())
            self._pending[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        # Shielded: one caller going away must not cancel the render the others are waiting for.
        return await asyncio.shield(task)

    def _settle(self, key: str, task: asyncio.Task[bytes]) -> None:
        if self._pending.get(key) is task:
            del self._pending[key]
        if task.cancelled() or task.exception() is not None:
            return  # failures are not cached: the next request tries again
        self._put(key, task.result())

    def _put(self, key: str, value: bytes) -> None:
        if key in self._items:
            self._bytes -= len(self._items.pop(key))
        self._items[key] = value
        self._bytes += len(value)
        while self._items and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
            _, evicted = self._items.popitem(last=False)
            self._bytes -= len(evicted)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0
