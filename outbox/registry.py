"""Job handlers by kind. A handler carries out one outbox job; it says how a failure should be treated
by raising TemporaryFailure (retry later, with backoff) or PermanentFailure (dead, with the reason).
Any other exception counts as temporary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from models import OutboxJob


class TemporaryFailure(Exception):
    """Try again later (the remote system is down, busy, rate-limited, timed out).

    ``retry_after`` (seconds) is set when the remote system said when to come back (HTTP 429/503 Retry-After):
    the job is due again then, and the attempt does not count towards the job's maximum (being told to wait
    is not failing)."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentFailure(Exception):
    """Retrying cannot help (bad data, refused for good); the job goes dead with this reason."""


@dataclass(frozen=True)
class JobContext:
    app: web.Application  # app[WECHAT], app[HIS], app[SETTINGS], app[KV_STORE], app[CIPHER]
    job: OutboxJob


Handler = Callable[[JobContext], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        if kind in HANDLERS and HANDLERS[kind] is not fn:
            raise ValueError(f"two handlers for job kind {kind}")
        HANDLERS[kind] = fn
        return fn

    return register


# What to do when a job of a kind goes dead (e.g. show "HIS sync failed" on the referral): called once, after
# the job is marked dead, with the reason. Optional; its own failure is logged and does not revive the job.
DeadHandler = Callable[[JobContext, str], Awaitable[None]]
DEAD_HANDLERS: dict[str, DeadHandler] = {}


def on_dead(kind: str) -> Callable[[DeadHandler], DeadHandler]:
    def register(fn: DeadHandler) -> DeadHandler:
        if kind in DEAD_HANDLERS and DEAD_HANDLERS[kind] is not fn:
            raise ValueError(f"two dead-job handlers for job kind {kind}")
        DEAD_HANDLERS[kind] = fn
        return fn

    return register
