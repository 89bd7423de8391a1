"""The outbox dispatcher: claims due jobs under a lease, runs their handlers, records each outcome.

A job is due when it is pending with `next_attempt_at <= now`, or running with an expired lease (the process
that claimed it died or hung). Claiming sets `state=running`, `lease_until`, `locked_by` (a claim token naming
this worker) and counts the attempt, so a job that keeps killing its worker still ends dead.

- PostgreSQL: one `UPDATE ... RETURNING` over a `FOR UPDATE SKIP LOCKED` sub-select; any number of workers
  share the table without waiting on one another, and the locked re-check keeps two from claiming one job.
- SQLite (embedded, one process): one `UPDATE ... WHERE id IN (sub-select) RETURNING`; SQLite runs one writer
  at a time, so the statement is atomic even if a second dispatcher shares the file.
Both return the claimed rows whole: claiming is one statement.

Outcomes: success → done (written in batches: one UPDATE per refill); TemporaryFailure, a handler timeout or any
other exception → pending again after exponential backoff with jitter, until `max_attempts`, then dead (a
TemporaryFailure with `retry_after`, the remote's Retry-After, is due again at that time and not counted);
PermanentFailure → dead at once. A dead job keeps its reason in `last_error` and its kind's dead handler runs.
Every outcome write is conditional on the claim token, so a worker that outlived its lease cannot overwrite
the outcome of the worker that took the job over.

The loop keeps up to `concurrency` jobs in flight and refills when half have finished; when idle it sleeps
until a wake-up (outbox.wakeup), its poll interval, or the next retry it scheduled itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web
from tortoise import connections

from models import JobState, OutboxJob
from outbox.registry import DEAD_HANDLERS, HANDLERS, JobContext, PermanentFailure, TemporaryFailure
from security.redaction import redact
from settings import Settings

log = logging.getLogger("referral_cloud.outbox")

# After a wake-up that found nothing (the enqueuing transaction had not committed yet), look again after
# these delays before going back to the poll interval.
SETTLE = (0.02, 0.1, 0.4, 1.0)
# A finished job's done mark waits at most this long for its batch-mates.
FLUSH_AFTER = 0.05
# Shutdown waits this long for jobs in flight before cancelling them and handing them back.
STOP_GRACE = 10.0

PG_CLAIM = """
WITH due AS (
    SELECT id FROM outbox_job
    WHERE kind = ANY($4::varchar[])
      AND ((state = 'pending' AND next_attempt_at <= $1) OR (state = 'running' AND lease_until < $1))
    ORDER BY next_attempt_at, id
    LIMIT $5
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox_job AS j
SET state = 'running', attempts = j.attempts + 1, lease_until = $2, locked_by = $3, updated_at = $1
FROM due WHERE j.id = due.id
RETURNING j.*
"""

SQLITE_CLAIM = """
UPDATE outbox_job
SET state = 'running', attempts = attempts + 1, lease_until = ?, locked_by = ?, updated_at = ?
WHERE id IN (
    SELECT id FROM outbox_job
    WHERE kind IN ({kinds})
      AND ((state = 'pending' AND next_attempt_at <= ?) OR (state = 'running' AND lease_until < ?))
    ORDER BY next_attempt_at, id
    LIMIT ?
)
RETURNING *
"""


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DispatcherConfig:
    poll: float = 2.0
    lease: float = 120.0
    concurrency: int = 32
    max_attempts: int = 12
    backoff: float = 2.0
    backoff_max: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatcherConfig:
        return cls(poll=settings.outbox_poll, lease=settings.outbox_lease, concurrency=settings.outbox_concurrency,
                   max_attempts=settings.outbox_max_attempts, backoff=settings.outbox_backoff,
                   backoff_max=settings.outbox_backoff_max)

    @property
    def handler_timeout(self) -> float:
        """A handler gets half the lease, so it finishes (or fails) well before another worker may take over."""
        return self.lease / 2


def backoff_delay(attempts: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt number `attempts`: base·2^(attempts−1), capped, with "equal jitter"
    (half fixed, half random) so that jobs which failed together do not all come back together."""
    ceiling = min(cap, base * 2 ** min(max(attempts - 1, 0), 60))
    return ceiling / 2 + rng() * ceiling / 2


def failure_reason(exc: BaseException) -> str:
    """What goes into last_error: our failures carry a Chinese reason; anything else is named by its type.
    Redacted, because a remote system's error text may echo an ID or phone number."""
    if isinstance(exc, (TemporaryFailure, PermanentFailure)) and str(exc):
        text = str(exc)
    elif isinstance(exc, TimeoutError):
        text = "处理超时"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(text)[:2000]


@dataclass
class DispatcherStats:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    claims: int = 0
    started_at: float = field(default_factory=time.monotonic)


class Dispatcher:
    def __init__(self, app: web.Application, config: DispatcherConfig, *, worker_id: str | None = None) -> None:
        self.app = app
        self.config = config
        host = socket.gethostname()[:24]
        self.worker_id = worker_id or f"{host}:{os.getpid()}:{secrets.token_hex(2)}"
        self.stats = DispatcherStats()
        self._claims = 0
        self._running: dict[asyncio.Task, OutboxJob] = {}
        self._done: list[tuple[int, str]] = []
        self._done_since: float | None = None
        self._kick = asyncio.Event()
        self._woken = False
        self._stopping = False
        self._next_due: float | None = None

    # -- waking -------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """A job was written: look for work now (see outbox.wakeup)."""
        self._woken = True
        self._kick.set()

    def _note_due(self, delay: float) -> None:
        at = asyncio.get_running_loop().time() + delay
        self._next_due = at if self._next_due is None else min(self._next_due, at)

    # -- claiming -----------------------------------------------------------------------------------------

    def _token(self) -> str:
        self._claims += 1
        return f"{self.worker_id}:{self._claims}"[-64:]

    async def claim(self, limit: int) -> list[OutboxJob]:
        """Claim up to `limit` due jobs of the kinds this process has handlers for."""
        kinds = sorted(HANDLERS)
        if not kinds or limit <= 0:
            return []
        now = _now()
        lease_until = now + timedelta(seconds=self.config.lease)
        token = self._token()
        conn = connections.get("default")
        if conn.capabilities.dialect == "postgres":
            rows = await conn.execute_query_dict(PG_CLAIM, [now, lease_until, token, kinds, limit])
        else:
            # Both times are UTC, as every stored time is (SQLite compares them as text); Tortoise's adapter
            # writes them the way it writes its own.
            sql = SQLITE_CLAIM.format(kinds=", ".join("?" * len(kinds)))
            rows = await conn.execute_query_dict(sql, [lease_until, token, now, *kinds, now, now, limit])
        # Rows as Tortoise builds them from its own SELECTs (the dialect's value conversions included).
        jobs = [OutboxJob._init_from_db(**row) for row in rows]
        self.stats.claims += 1
        self.stats.claimed += len(jobs)
        return sorted(jobs, key=lambda job: (job.next_attempt_at, job.id))

    # -- running one job -----------------------------------------------------------------------------------

    async def execute(self, job: OutboxJob) -> None:
        """Run one claimed job's handler and record the outcome (done is buffered until the next flush)."""
        try:
            await self._execute(job)
        except Exception:
            # Recording the outcome failed (database gone?): the job stays running and is taken over after
            # its lease; its handler must be safe to run again, as every handler must.
            log.exception("outbox job %s (%s): outcome not recorded", job.id, job.kind)

    async def _execute(self, job: OutboxJob) -> None:
        handler = HANDLERS.get(job.kind)
        if handler is None:
            await self._failed(job, TemporaryFailure(f"本进程没有 {job.kind} 任务的处理程序"), permanent=False)
            return
        if job.attempts > self.config.max_attempts:
            await self._dead(job, "处理中多次中断（进程退出或超时），已超过最大尝试次数")
            return
        try:
            async with asyncio.timeout(self.config.handler_timeout):
                await handler(JobContext(self.app, job))
        except PermanentFailure as exc:
            await self._failed(job, exc, permanent=True)
        except (TemporaryFailure, TimeoutError) as exc:
            await self._failed(job, exc, permanent=False)
        except Exception as exc:
            log.exception("outbox job %s (%s) raised; treated as temporary", job.id, job.kind)
            await self._failed(job, exc, permanent=False)
        else:
            if not self._done:
                self._done_since = time.monotonic()
            self._done.append((job.id, job.locked_by))

    async def _failed(self, job: OutboxJob, exc: BaseException, *, permanent: bool) -> None:
        reason = failure_reason(exc)
        asked = exc.retry_after if isinstance(exc, TemporaryFailure) else None
        if permanent or (asked is None and job.attempts >= self.config.max_attempts):
            await self._dead(job, reason)
            return
        attempts = job.attempts
        if asked is not None:
            # The remote said when to come back: then, spread over up to half as long again so that the jobs it
            # turned away together do not all return in the same instant (within the backoff cap); and this
            # attempt is not counted.
            delay = min(max(asked, self.config.backoff) * (1 + random.random() / 2), self.config.backoff_max)
            attempts = max(job.attempts - 1, 0)
        else:
            delay = backoff_delay(job.attempts, self.config.backoff, self.config.backoff_max)
        now = _now()
        await OutboxJob.filter(id=job.id, state=JobState.RUNNING, locked_by=job.locked_by).update(
            state=JobState.PENDING, next_attempt_at=now + timedelta(seconds=delay), lease_until=None,
            locked_by="", last_error=reason, updated_at=now, attempts=attempts)
        self.stats.retried += 1
        self._note_due(delay)
        log.info("outbox job %s (%s) attempt %d failed, retry in %.1fs: %s", job.id, job.kind, job.attempts,
                 delay, reason)

    async def _dead(self, job: OutboxJob, reason: str) -> None:
        now = _now()
        marked = await OutboxJob.filter(id=job.id, state=JobState.RUNNING, locked_by=job.locked_by).update(
            state=JobState.DEAD, lease_until=None, last_error=reason, updated_at=now)
        if not marked:
            return  # another worker took it over after our lease ran out; its outcome stands
        self.stats.dead += 1
        log.warning("outbox job %s (%s) dead after %d attempts: %s", job.id, job.kind, job.attempts, reason)
        hook = DEAD_HANDLERS.get(job.kind)
        if hook is not None:
            try:
                await hook(JobContext(self.app, job), reason)
            except Exception:
                log.exception("dead-job handler of %s failed for job %s", job.kind, job.id)

    async def flush(self) -> None:
        """Mark the buffered finished jobs done, in one statement."""
        if not self._done:
            return
        batch, self._done, self._done_since = self._done, [], None
        ids = [job_id for job_id, _ in batch]
        tokens = sorted({token for _, token in batch})
        try:
            marked = await OutboxJob.filter(id__in=ids, state=JobState.RUNNING, locked_by__in=tokens).update(
                state=JobState.DONE, lease_until=None, last_error="", updated_at=_now())
        except Exception as exc:
            log.warning("outbox: marking %d jobs done failed (%s); will try again", len(batch), type(exc).__name__)
            self._done = batch + self._done
            self._done_since = time.monotonic()
            return
        self.stats.done += marked
        if marked < len(ids):
            log.warning("outbox: %d finished jobs had already been taken over by another worker",
                        len(ids) - marked)

    # -- the loop ------------------------------------------------------------------------------------------

    def _start(self, job: OutboxJob) -> None:
        task = asyncio.get_running_loop().create_task(self.execute(job), name=f"outbox-job-{job.id}")
        self._running[task] = job
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.pop(task, None)
        self._kick.set()

    async def run(self) -> None:
        """Dispatch until stop() is called."""
        loop = asyncio.get_running_loop()
        poll_at = loop.time()
        settle: list[float] = []
        settle_at: float | None = None
        want_claim = True
        refill = max(1, self.config.concurrency // 2)
        log.info("outbox dispatcher %s started: kinds %s", self.worker_id, ", ".join(sorted(HANDLERS)) or "(none)")
        try:
            while not self._stopping:
                self._kick.clear()
                now = loop.time()
                if self._woken:
                    self._woken, want_claim = False, True
                    settle = list(SETTLE)
                    settle_at = now + settle.pop(0)
                if now >= poll_at:
                    want_claim, poll_at = True, now + self.config.poll
                if settle_at is not None and now >= settle_at:
                    want_claim = True
                    settle_at = now + settle.pop(0) if settle else None
                if self._next_due is not None and now >= self._next_due:
                    want_claim, self._next_due = True, None
                free = self.config.concurrency - len(self._running)
                if want_claim and free > 0 and (free >= refill or not self._running):
                    await self.flush()
                    try:
                        jobs = await self.claim(free)
                    except Exception as exc:
                        log.warning("outbox: claiming jobs failed (%s); retrying", type(exc).__name__)
                        jobs = []
                        want_claim = False
                        poll_at = min(poll_at, now + 1.0)
                    else:
                        want_claim = len(jobs) == free  # a short claim means the queue is drained
                    for job in jobs:
                        self._start(job)
                    if jobs:
                        continue
                if self._done and (not self._running or len(self._done) >= refill
                                   or time.monotonic() - (self._done_since or 0) >= FLUSH_AFTER):
                    await self.flush()
                deadlines = [poll_at] + [t for t in (settle_at, self._next_due) if t is not None]
                timeout = max(min(deadlines) - loop.time(), 0.0)
                if self._done:
                    timeout = min(timeout, FLUSH_AFTER)
                try:
                    await asyncio.wait_for(self._kick.wait(), timeout)
                except TimeoutError:
                    pass
        finally:
            await self._wind_down()

    def stop(self) -> None:
        self._stopping = True
        self._kick.set()

    async def _wind_down(self) -> None:
        """Let jobs in flight finish for a while; hand back the rest so another run takes them at once (the
        interrupted run still counts as an attempt: outbox.once tells attempts apart by their number)."""
        if self._running:
            _, pending = await asyncio.wait(list(self._running), timeout=STOP_GRACE)
            jobs = [self._running[task] for task in pending if task in self._running]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                for job in jobs:
                    await OutboxJob.filter(id=job.id, state=JobState.RUNNING, locked_by=job.locked_by).update(
                        state=JobState.PENDING, lease_until=None, locked_by="", next_attempt_at=_now(),
                        updated_at=_now())
                log.info("outbox: %d unfinished jobs handed back at shutdown", len(jobs))
        await self.flush()
        log.info("outbox dispatcher %s stopped: %d done, %d retried, %d dead", self.worker_id, self.stats.done,
                 self.stats.retried, self.stats.dead)

    async def drain(self) -> int:
        """Run every due job now and until none is due, in this task (tests, benches); the number run."""
        total = 0
        while True:
            jobs = await self.claim(self.config.concurrency)
            if not jobs:
                return total
            await asyncio.gather(*(self.execute(job) for job in jobs))
            await self.flush()
            total += len(jobs)
