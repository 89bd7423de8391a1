"""Wake-ups: `enqueue` asks every dispatcher to look for work now instead of at its next poll.

A wake-up is a hint, never the record: the job row is. `enqueue` runs inside its caller's transaction and
Tortoise has no on-commit hook, so the wake-up is published at once and may arrive before the job is visible.
The dispatcher therefore answers a wake-up that finds nothing with a few quick re-checks (its settle schedule)
before it falls back to polling; a transaction that outlasts the schedule is picked up by the next poll. So a
lost or early wake-up costs latency, never a job.

Each running app registers one Waker for its KV store (Redis in production, so workers in other processes
hear it; in-process in embedded mode). The enqueues of one event-loop turn share one publish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kv import KV

log = logging.getLogger("referral_cloud.outbox")

CHANNEL = "outbox:wake"


class Waker:
    def __init__(self, kv: KV, local: Callable[[], None] | None = None) -> None:
        self._kv = kv
        self._local = local  # this process's own dispatcher, woken without a round trip
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()

    def request(self) -> None:
        if self._local is not None:
            self._local()
        if self._scheduled:
            return
        self._scheduled = True
        task = asyncio.get_running_loop().create_task(self._publish(), name="outbox-wake")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self) -> None:
        await asyncio.sleep(0)  # let the other enqueues of this turn join this publish
        self._scheduled = False
        try:
            await self._kv.publish(CHANNEL, "1")
        except Exception as exc:  # a lost wake-up only delays the job until the next poll
            log.warning("outbox wake-up not published: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


_WAKERS: set[Waker] = set()


def register(waker: Waker) -> None:
    _WAKERS.add(waker)


def unregister(waker: Waker) -> None:
    _WAKERS.discard(waker)


def request_wake() -> None:
    """Wake the dispatchers (no-op outside a running app, e.g. in a seed script: they poll)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    for waker in list(_WAKERS):
        waker.request()
