"""Writing outbox jobs. Call `enqueue` inside the transaction of the change that causes the job, so
the job exists exactly when the change does; a dispatcher carries it out afterwards."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.models import Model

from models import OutboxJob
from outbox.wakeup import request_wake
from sql_batch import insert_all


@dataclass(frozen=True)
class NewJob:
    """A job to write: `run_at` None means now."""

    kind: str
    payload: dict
    dedupe_key: str
    run_at: datetime | None = None


async def enqueue(kind: str, payload: dict, dedupe_key: str, *, run_at: datetime | None = None) -> None:
    """Add a job once: a second enqueue with the same dedupe key leaves the first job as it is."""
    await enqueue_all([NewJob(kind, payload, dedupe_key, run_at)])


async def enqueue_all(jobs: Iterable[NewJob], *, along: Sequence[Model] = ()) -> None:
    """Add several jobs, each once, in one INSERT that ignores taken dedupe keys (no read first: this runs in
    every transition's transaction). Dispatchers are woken at once if any job is due now (see outbox.wakeup
    for why that is safe before the commit; a wake for a job that already existed finds nothing new); a job
    with a future `run_at` is found by their polls.

    `along`: other unsaved rows the jobs go with (a fan-out's inbox messages), inserted likewise, conflicts
    ignored; on PostgreSQL in the same statement (sql_batch.insert_all)."""
    rows, due = job_rows(jobs)
    if not rows and not along:
        return
    await insert_all([*along, *rows])
    if due:
        request_wake()


def job_rows(jobs: Iterable[NewJob]) -> tuple[list[OutboxJob], bool]:
    """The rows `jobs` are written as (unsaved), and whether any is due now: the caller that writes them some
    other way (referrals.timeline, in the transition's own statement) then calls `request_wake` if so."""
    now = datetime.now(UTC)
    # SQLite compares stored times as text: keep every run_at in UTC, whatever offset the caller used.
    rows = [OutboxJob(kind=job.kind, payload=job.payload, dedupe_key=job.dedupe_key,
                      next_attempt_at=job.run_at.astimezone(UTC) if job.run_at is not None else now)
            for job in jobs]
    return rows, any(row.next_attempt_at <= now for row in rows)


async def job_of(dedupe_key: str) -> OutboxJob:
    """The job a dedupe key names (for operators and tests; the hot path never reads it back)."""
    return await OutboxJob.get(dedupe_key=dedupe_key)
