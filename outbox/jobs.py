"""Writing outbox jobs. Call `enqueue` inside the transaction of the change that causes the job, so
the job exists exactly when the change does; a dispatcher carries it out afterwards."""

from __future__ import annotations

from datetime import UTC, datetime

from models import OutboxJob
from outbox.wakeup import request_wake


async def enqueue(kind: str, payload: dict, dedupe_key: str, *, run_at: datetime | None = None) -> OutboxJob:
    """Add a job once: a second enqueue with the same dedupe key returns the first job.

    Dispatchers are woken at once (see outbox.wakeup for why that is safe before the commit); a job with a
    future `run_at` is found by their polls."""
    # SQLite compares stored times as text: keep every run_at in UTC, whatever offset the caller used.
    run_at = run_at.astimezone(UTC) if run_at is not None else None
    job, created = await OutboxJob.get_or_create(
        dedupe_key=dedupe_key,
        defaults={"kind": kind, "payload": payload, "next_attempt_at": run_at or datetime.now(UTC)})
    if created and (run_at is None or run_at <= datetime.now(UTC)):
        request_wake()
    return job
