"""At most once across crashes: a job's one non-idempotent call (a WeChat message) is bracketed by a marker in
the KV store, "sending" before the call and "sent" after it.

Why: WeChat (and its sandbox) take no idempotency key, and a worker can die after WeChat accepted a message but
before the job was marked done. Without a marker the job would be sent again when its lease expires. With it:

- no marker: the call was never started; send.
- "sent": an earlier run delivered it and died before the done mark; skip (the job completes).
- "sending": an earlier run started the call and never learned the outcome: the process died (SIGKILL, power)
  or was cancelled in that instant, while the request was in flight. Nobody can tell whether WeChat took it,
  so the job goes dead with OutcomeUnknown instead of risking a duplicate; an admin who checks with the
  recipient can retry it. At most the requests in flight when a process dies (its dispatcher's
  concurrency) can end this way.

An exception from the call itself (WeChat said no, a timeout) clears the marker: the handler decides whether
to retry, and a retry after a timeout accepts that the timed-out request may have got through (WeChat offers
no way to ask). The markers live in the KV store (Redis in production, shared by all workers); they only
have to outlive the job's lease, hence the TTL. In embedded mode the store is in-process, so a crash of that
one process forgets them and its in-flight sends are retried (at least once there).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from appkeys import KV_STORE
from outbox.registry import JobContext, PermanentFailure

T = TypeVar("T")

MARKER_TTL = 24 * 3600.0
SENDING, SENT = "sending", "sent"


class OutcomeUnknown(PermanentFailure):
    """An earlier run started the call and died before learning whether it took effect."""


def marker_key(job_id: int) -> str:
    return f"outbox:once:{job_id}"


def _parse(raw: bytes | None) -> tuple[str, int] | None:
    try:
        state, _, attempt = (raw or b"").decode().partition(":")
        return state, int(attempt)
    except ValueError:
        return None


async def deliver_once(ctx: JobContext, call: Callable[[], Awaitable[T]]) -> T | None:
    """Make `call` at most once for this job; None when an earlier run already made it.

    The marker records the attempt that wrote it. Attempts only grow while a job is retried, so a marker from
    a later-or-equal attempt than this one predates an admin's retry (which restarts the count) and is stale:
    the admin chose to send again."""
    kv = ctx.app[KV_STORE]
    key = marker_key(ctx.job.id)
    attempt = ctx.job.attempts
    # On a first attempt any marker predates an admin's retry: skip the read (one round trip per message).
    marker = _parse(await kv.get(key)) if attempt > 1 else None
    if marker is not None and marker[1] < attempt:
        if marker[0] == SENT:
            return None
        raise OutcomeUnknown("上次发送途中处理进程中断，无法确认对方是否已收到；为避免重复发送未自动重发，"
                             "请核实后在任务管理中重试")
    await kv.set(key, f"{SENDING}:{attempt}", ex=MARKER_TTL)
    try:
        result = await call()
    except asyncio.CancelledError:
        raise  # cancelled in flight: the outcome is unknown, the marker stays
    except Exception:
        await kv.delete(key)
        raise
    await kv.set(key, f"{SENT}:{attempt}", ex=MARKER_TTL)
    return result
