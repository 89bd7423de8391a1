"""Writing outbox jobs. Call `enqueue` inside the transaction of the change that causes the job, so
the job exists exactly when the change does; a dispatcher carries it out afterwards."""

from __future__ import annotations

from datetime import UTC, datetime

from models import OutboxJob
from outbox.wakeup import request_wake


async def enqueue(kind: str, payload: dict, dedupe_key: str, *, run_at: datetime | None = None) -> None:
    """Add a job once: a second enqueue with the same dedupe key leaves the first job as it is.

    One INSERT that ignores a taken dedupe key (no read first: this runs in every transition's transaction).
    Dispatchers are woken at once (see outbox.wakeup for why that is safe before the commit; a wake for a
    job that already existed finds nothing new); a job with a future `run_at` is found by their polls."""
    now = datetime.now(UTC)
    # SQLite compares stored times as text: keep every run_at in UTC, whatever offset the caller used.
    run_at = run_at.astimezone(UTC) if run_at is not None else now
    await OutboxJob.bulk_create([OutboxJob(kind=kind, payload=payload, dedupe_key=dedupe_key, next_attempt_at=run_at)],
                                ignore_conflicts=True)
    if run_at <= now:
        request_wake()


async def job_of(dedupe_key: str) -> OutboxJob:
    """The job a dedupe key names (for operators and tests; the hot path never reads it back)."""
    return await OutboxJob.get(dedupe_key=dedupe_key)
