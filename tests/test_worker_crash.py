"""The crash test of issue 5: two `python app.py worker` processes on PostgreSQL and Redis deliver 1,000
customer-service messages to a standalone WeChat sandbox; one worker is SIGKILLed mid-run.

What is guaranteed, and asserted:
- no message ever reaches the sandbox twice, whatever instant the kill hits;
- every job ends done, except those whose request was in flight at the kill (at most the killed worker's
  concurrency): their outcome cannot be known (WeChat has no idempotency key and no "did you get it" call),
  so they end dead with OutcomeUnknown rather than being sent a second time;
- the jobs the killed worker had claimed but not started are taken over when its lease runs out;
- after the operator's step (check each unknown one with the recipient, here the sandbox's record, and retry
  the undelivered ones) every message has reached the sandbox exactly once;
- enqueueing the same 1,000 dedupe keys again adds no job and sends nothing.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

import db
from models import JobState, OutboxJob
from outbox.admin import retry_job
from outbox.jobs import enqueue
from outbox.probe import KIND, probe_text
from outbox.wakeup import CHANNEL
from tests.conftest import (
    BASE_REDIS_URL,
    RUN_ID,
    _drop_redis_prefix,
    _truncate_pg,
    make_settings,
)
from tests.test_shared_token import free_port, key32, start, stop, wait_for

pytestmark = pytest.mark.slow

JOBS = 1000
RECIPIENTS = 20
CONCURRENCY = 32
LEASE = 3.0
FINISH_TIMEOUT = 90.0


def key(n: int) -> str:
    return f"crash:{n:04d}"


def openid(n: int) -> str:
    return f"o_crash_{n % RECIPIENTS:02d}"


async def enqueue_all(run_at: datetime | None = None) -> list[OutboxJob]:
    """Enqueue every probe; the jobs that the keys name, in key order."""
    for n in range(JOBS):
        await enqueue(KIND, {"openid": openid(n)}, key(n), run_at=run_at)
    return await OutboxJob.filter(dedupe_key__startswith="crash:").order_by("dedupe_key")


async def sandbox_counts(session: aiohttp.ClientSession, sandbox: str) -> Counter:
    async with session.get(f"{sandbox}/sandbox/messages", params={"kind": "customer_service"}) as resp:
        items = (await resp.json())["items"]
    return Counter(m["payload"]["content"] for m in items)


async def states() -> Counter:
    return Counter(await OutboxJob.filter(kind=KIND).values_list("state", flat=True))


async def until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return result


async def workers_started(logs: list[Path]) -> bool:
    return all(log.exists() and re.search(r"worker \S+ started", log.read_text(errors="replace")) for log in logs)


async def test_one_worker_killed_mid_run_no_message_is_sent_twice(services_database, tmp_path):
    await _truncate_pg(services_database)
    sandbox_port = free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    prefix = f"rc-test-{RUN_ID}-crash-{uuid.uuid4().hex[:6]}:"
    env = {
        **os.environ, "DATABASE_URL": services_database, "REDIS_URL": BASE_REDIS_URL, "REDIS_PREFIX": prefix,
        "WECHAT_API_BASE": sandbox, "JWT_SECRET": secrets.token_urlsafe(32), "DATA_KEY": key32(),
        "LOOKUP_KEY": key32(), "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "INFO",
        "OUTBOX_LEASE": str(LEASE), "OUTBOX_POLL": "0.5", "OUTBOX_CONCURRENCY": str(CONCURRENCY),
        "OUTBOX_BACKOFF": "0.2", "OUTBOX_BACKOFF_MAX": "1",
    }
    logs = [tmp_path / "sandbox.log", tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    processes = [start(["-m", "wechat.sandbox", "--port", str(sandbox_port)], env, logs[0])]
    settings = replace(make_settings(tmp_path, database_url=services_database, redis_url=BASE_REDIS_URL,
                                     redis_prefix=prefix), wechat_api_base=sandbox)
    await db.open_db(settings)
    from kv import connect

    kv = connect(BASE_REDIS_URL, prefix)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_for(session, f"{sandbox}/sandbox/stats", processes, logs)
            for n in range(RECIPIENTS):  # the recipients exist in the sandbox (as after a wx.login)
                await session.post(f"{sandbox}/sandbox/login-code", json={"openid": openid(n)})
            for log in logs[1:]:
                processes.append(start(["app.py", "worker"], env, log))
            await until(lambda: workers_started(logs[1:]), 30, "the workers")

            # All 1,000 become due at once, so both workers hold a full load when one of them is killed.
            jobs = await enqueue_all(run_at=datetime.now(UTC) + timedelta(hours=1))
            await OutboxJob.filter(kind=KIND).update(next_attempt_at=datetime.now(UTC))
            await kv.publish(CHANNEL, "1")
            # Kill worker 1 while messages are flowing (some done, many still to go) and it holds claimed jobs.
            victim = processes[1]

            async def mid_run() -> bool:
                holding = OutboxJob.filter(kind=KIND, state=JobState.RUNNING, locked_by__contains=f":{victim.pid}:")
                return await _done_at_least(JOBS // 4) and await holding.exists()

            await until(mid_run, 30, "worker 1 to be busy with a quarter of the jobs done")
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(timeout=10)

            async def settled():
                counts = await states()
                return counts if counts[JobState.PENDING] == counts[JobState.RUNNING] == 0 else None

            final = await until(settled, FINISH_TIMEOUT, "every job to finish")
            delivered = await sandbox_counts(session, sandbox)

            # Never twice.
            assert max(delivered.values()) == 1, [t for t, c in delivered.items() if c > 1][:5]
            # Only in-flight sends of the killed worker can be unknown; everything else was delivered once.
            unknown = await OutboxJob.filter(kind=KIND, state=JobState.DEAD)
            assert final[JobState.DONE] + len(unknown) == JOBS and len(unknown) <= CONCURRENCY
            assert all("无法确认" in job.last_error for job in unknown)
            for job in await OutboxJob.filter(kind=KIND, state=JobState.DONE):
                assert delivered[probe_text(job.dedupe_key)] == 1, job.dedupe_key
            # The killed worker's claimed jobs were taken over after its lease (a second attempt each).
            assert await OutboxJob.filter(kind=KIND, attempts__gte=2).exists()

            # The operator's step: retry the unknown ones the recipient never got.
            undelivered = [job for job in unknown if not delivered[probe_text(job.dedupe_key)]]
            for job in undelivered:
                await retry_job(job.id)
            await kv.publish(CHANNEL, "1")
            await until(lambda: _done_at_least(JOBS - (len(unknown) - len(undelivered))), 30, "the retries")
            delivered = await sandbox_counts(session, sandbox)
            assert sorted(delivered) == sorted(probe_text(key(n)) for n in range(JOBS))
            assert set(delivered.values()) == {1}

            # Enqueueing the same dedupe keys again is harmless: the same jobs, nothing new is sent.
            again = await enqueue_all()
            assert [job.id for job in again] == [job.id for job in jobs]
            await kv.publish(CHANNEL, "1")
            await asyncio.sleep(1.5)  # three polls of the surviving worker
            assert await OutboxJob.filter(kind=KIND).count() == JOBS
            assert sum((await sandbox_counts(session, sandbox)).values()) == JOBS
            assert processes[2].poll() is None, "the surviving worker died"
    finally:
        for process in processes:
            stop(process)
        await kv.close()
        await db.close_db()
        await _drop_redis_prefix(prefix)


async def _done_at_least(count: int) -> bool:
    return await OutboxJob.filter(kind=KIND, state=JobState.DONE).count() >= count
