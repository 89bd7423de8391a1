"""Job handlers by kind. A handler carries out one outbox job; it says how a failure should be treated
by raising TemporaryFailure (retry later, with backoff) or PermanentFailure (dead, with the reason).
Any other exception counts as temporary."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from models import OutboxJob


class TemporaryFailure(Exception):
    """Try again later (the remote system is down, busy, rate-limited, timed out)."""


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
