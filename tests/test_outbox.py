"""The outbox dispatcher on both backends: claiming, retries with backoff, dead letters, lease take-over,
dedupe keys, wake-ups and the at-most-once send marker. Test-only job kinds are registered per test."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from tortoise.transactions import in_transaction

from app import create_app
from appkeys import KV_STORE
from models import JobState, OutboxJob
from outbox import DISPATCHER, listen, run_due_jobs
from outbox import dispatcher as dispatcher_module
from outbox.admin import retry_job
from outbox.dispatcher import Dispatcher, DispatcherConfig, backoff_delay, failure_reason
from outbox.jobs import NewJob, enqueue, enqueue_all, job_of
from outbox.once import SENT, deliver_once, marker_key
from outbox.probe import KIND as PROBE
from outbox.probe import enqueue_probe, probe_text
from outbox.registry import DEAD_HANDLERS, HANDLERS, PermanentFailure, TemporaryFailure
from outbox.wakeup import CHANNEL

FAST = DispatcherConfig(poll=0.05, lease=5.0, concurrency=8, max_attempts=4, backoff=0.05, backoff_max=0.2)


async def enqueued(kind: str, payload: dict, dedupe_key: str, **kwargs) -> OutboxJob:
    """enqueue, then the job that the dedupe key names (enqueue itself returns nothing)."""
    await enqueue(kind, payload, dedupe_key, **kwargs)
    return await job_of(dedupe_key)


@pytest.fixture
def kinds():
    """Register test-only handler kinds; removed afterwards so no other test's dispatcher claims them."""
    added: list[str] = []

    def add(kind, fn, dead=None):
        HANDLERS[kind] = fn
        if dead is not None:
            DEAD_HANDLERS[kind] = dead
        added.append(kind)

    yield add
    for kind in added:
        HANDLERS.pop(kind, None)
        DEAD_HANDLERS.pop(kind, None)


@pytest.fixture
async def dispatching(aiohttp_client, settings):
    """A client whose app runs the embedded dispatcher with short timings (poll 30 s: only wake-ups are fast)."""
    fast = replace(settings, embedded_dispatcher=True, outbox_poll=30.0, outbox_lease=5.0, outbox_backoff=0.05,
                   outbox_backoff_max=0.2, outbox_max_attempts=4, outbox_concurrency=8)
    return await aiohttp_client(create_app(fast))


async def eventually(check, timeout: float = 5.0, interval: float = 0.02):
    """Await `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(interval)


async def job_in(job_id: int, *states: str) -> OutboxJob | None:
    job = await OutboxJob.get(id=job_id)
    return job if job.state in states else None


async def run_until(app, config: DispatcherConfig, job_id: int, state: str, timeout: float = 5.0) -> OutboxJob:
    """Run due jobs by hand until the job reaches `state` (its retries come due as time passes)."""
    async def step():
        await run_due_jobs(app, config)
        return await job_in(job_id, state)

    return await eventually(step, timeout)


def test_backoff_doubles_is_capped_and_jittered():
    assert backoff_delay(1, 2.0, 3600, rng=lambda: 0.0) == 1.0
    assert backoff_delay(1, 2.0, 3600, rng=lambda: 1.0) == 2.0
    assert backoff_delay(4, 2.0, 3600, rng=lambda: 1.0) == 16.0
    assert backoff_delay(30, 2.0, 3600, rng=lambda: 1.0) == 3600.0
    assert backoff_delay(10_000, 2.0, 60, rng=lambda: 0.5) == 45.0
    delays = {backoff_delay(3, 2.0, 3600) for _ in range(50)}
    assert all(4.0 <= d <= 8.0 for d in delays) and len(delays) > 1


def test_failure_reasons_are_redacted_and_named():
    assert failure_reason(PermanentFailure("患者 13812345678 不存在")) == "患者 138****5678 不存在"
    assert failure_reason(RuntimeError("boom")) == "RuntimeError: boom"
    assert failure_reason(TimeoutError()) == "处理超时"


async def test_a_job_runs_once_and_is_marked_done(client, kinds):
    app = client.server.app
    seen = []

    async def work(ctx):
        seen.append((ctx.job.kind, ctx.job.payload, ctx.job.attempts, ctx.app is app))

    kinds("test.work", work)
    job = await enqueued("test.work", {"n": 1}, "test:work:1")
    assert job.state == JobState.PENDING
    assert await run_due_jobs(app, FAST) == 1
    assert seen == [("test.work", {"n": 1}, 1, True)]
    done = await OutboxJob.get(id=job.id)
    assert (done.state, done.attempts, done.lease_until, done.last_error) == (JobState.DONE, 1, None, "")
    assert await run_due_jobs(app, FAST) == 0


async def test_a_dedupe_key_makes_a_second_enqueue_harmless(client, kinds):
    app = client.server.app
    runs = []

    async def work(ctx):
        runs.append(ctx.job.id)

    kinds("test.work", work)
    first = await enqueued("test.work", {"n": 1}, "test:same")
    again = await enqueued("test.work", {"n": 2}, "test:same")
    assert again.id == first.id and again.payload == {"n": 1}
    await run_due_jobs(app, FAST)
    after = await enqueued("test.work", {"n": 3}, "test:same")  # even after it ran
    assert after.id == first.id and after.state == JobState.DONE
    await run_due_jobs(app, FAST)
    assert runs == [first.id] and await OutboxJob.filter(dedupe_key="test:same").count() == 1


async def test_jobs_written_together_are_each_added_once_and_run_when_due(client, kinds):
    app = client.server.app
    runs = []

    async def work(ctx):
        runs.append(ctx.job.payload["n"])

    kinds("test.work", work)
    await enqueue("test.work", {"n": 0}, "test:batch:taken")
    later = datetime.now(UTC) + timedelta(hours=1)
    await enqueue_all([NewJob("test.work", {"n": 1}, "test:batch:1"), NewJob("test.work", {"n": 2}, "test:batch:taken"),
                       NewJob("test.work", {"n": 3}, "test:batch:later", run_at=later)])
    await enqueue_all([])  # nothing to write is no statement and no error
    assert (await job_of("test:batch:taken")).payload == {"n": 0}  # a taken key keeps its first job
    assert (await job_of("test:batch:later")).next_attempt_at == later
    await run_due_jobs(app, FAST)
    assert sorted(runs) == [0, 1]
    assert await OutboxJob.filter(dedupe_key__startswith="test:batch:").count() == 3


async def test_temporary_failures_retry_with_growing_backoff_then_succeed(client, kinds):
    app = client.server.app
    calls: list[tuple[int, float, str]] = []

    async def flaky(ctx):
        calls.append((ctx.job.attempts, time.monotonic(), ctx.job.last_error))
        if len(calls) < 3:
            raise TemporaryFailure("对方系统繁忙")

    kinds("test.flaky", flaky)
    config = replace(FAST, backoff=0.2, backoff_max=10.0)
    job = await enqueued("test.flaky", {}, "test:flaky")
    await run_due_jobs(app, config)
    waiting = await OutboxJob.get(id=job.id)
    assert waiting.state == JobState.PENDING and waiting.last_error == "对方系统繁忙"
    # First retry after 0.1–0.2 s (base 0.2 with equal jitter), the second after 0.2–0.4 s.
    assert 0.1 - 0.01 <= (waiting.next_attempt_at - waiting.updated_at).total_seconds() <= 0.2 + 0.01
    await run_until(app, config, job.id, JobState.DONE)
    assert [c[0] for c in calls] == [1, 2, 3]
    assert calls[1][2] == "对方系统繁忙"  # the handler sees why the last attempt failed
    assert calls[1][1] - calls[0][1] >= 0.1 and calls[2][1] - calls[1][1] >= 0.2
    done = await OutboxJob.get(id=job.id)
    assert done.attempts == 3 and done.last_error == ""


async def test_exhausted_attempts_go_dead_with_the_reason_and_the_dead_handler_runs(client, kinds):
    app = client.server.app
    told = []

    async def always(ctx):
        raise TemporaryFailure("HIS 一直不可用")

    async def dead(ctx, reason):
        told.append((ctx.job.id, reason))

    kinds("test.always", always, dead)
    job = await enqueued("test.always", {}, "test:always")
    await run_until(app, FAST, job.id, JobState.DEAD)
    dead_job = await OutboxJob.get(id=job.id)
    assert dead_job.attempts == FAST.max_attempts and dead_job.last_error == "HIS 一直不可用"
    assert told == [(job.id, "HIS 一直不可用")]


async def test_a_remote_that_says_when_to_come_back_gets_the_job_then_without_using_up_attempts(client, kinds):
    app = client.server.app
    calls = []

    async def throttled(ctx):
        calls.append(ctx.job.attempts)
        if len(calls) <= FAST.max_attempts + 1:  # more refusals than the job has attempts
            raise TemporaryFailure("对方繁忙", retry_after=0.1)

    kinds("test.throttled", throttled)
    job = await enqueued("test.throttled", {}, "test:throttled")
    started = datetime.now(UTC)
    await run_due_jobs(app, FAST)
    waiting = await OutboxJob.get(id=job.id)
    assert (waiting.state, waiting.attempts, waiting.last_error) == (JobState.PENDING, 0, "对方繁忙")
    # Due when the remote said (0.1 s), spread by up to half again; never before.
    assert timedelta(seconds=0.1) <= waiting.next_attempt_at - started <= timedelta(seconds=0.5)
    await run_until(app, FAST, job.id, JobState.DONE)
    assert calls == [1] * (FAST.max_attempts + 2)


async def test_a_permanent_failure_is_dead_at_once(client, kinds):
    app = client.server.app
    told = []

    async def refuse(ctx):
        raise PermanentFailure("HIS 拒绝：科室代码无效")

    async def dead(ctx, reason):
        told.append(reason)

    kinds("test.refuse", refuse, dead)
    job = await enqueued("test.refuse", {}, "test:refuse")
    await run_due_jobs(app, FAST)
    dead_job = await OutboxJob.get(id=job.id)
    assert (dead_job.state, dead_job.attempts, dead_job.last_error) == (JobState.DEAD, 1, "HIS 拒绝：科室代码无效")
    assert told == ["HIS 拒绝：科室代码无效"]


async def test_an_unexpected_exception_or_a_hung_handler_is_retried(client, kinds):
    app = client.server.app
    calls = []

    async def buggy(ctx):
        calls.append(ctx.job.last_error)
        if len(calls) == 1:
            raise KeyError("referral_id")
        if len(calls) == 2:
            await asyncio.sleep(5)  # longer than half the lease

    kinds("test.buggy", buggy)
    config = replace(FAST, lease=0.4)
    job = await enqueued("test.buggy", {}, "test:buggy")
    await run_until(app, config, job.id, JobState.DONE)
    assert calls == ["", "KeyError: 'referral_id'", "处理超时"]


async def test_a_job_whose_worker_died_is_taken_over_after_its_lease(client, kinds):
    app = client.server.app
    runs = []

    async def work(ctx):
        runs.append(ctx.job.dedupe_key)

    kinds("test.work", work)
    now = datetime.now(UTC)
    # Claimed by workers that are gone: one lease has run out, the other has not yet.
    expired = await OutboxJob.create(kind="test.work", dedupe_key="test:expired", payload={}, state=JobState.RUNNING,
                                     attempts=1, next_attempt_at=now - timedelta(seconds=60),
                                     lease_until=now - timedelta(seconds=1), locked_by="gone:1")
    leased = await OutboxJob.create(kind="test.work", dedupe_key="test:leased", payload={}, state=JobState.RUNNING,
                                    attempts=1, next_attempt_at=now - timedelta(seconds=60),
                                    lease_until=now + timedelta(seconds=60), locked_by="alive:1")
    assert await run_due_jobs(app, FAST) == 1
    assert runs == ["test:expired"]
    taken = await OutboxJob.get(id=expired.id)
    assert taken.state == JobState.DONE and taken.attempts == 2
    untouched = await OutboxJob.get(id=leased.id)
    assert untouched.state == JobState.RUNNING and untouched.locked_by == "alive:1"


async def test_a_job_that_keeps_killing_its_worker_ends_dead(client, kinds):
    app = client.server.app

    async def work(ctx):
        raise AssertionError("must not run again")

    kinds("test.work", work)
    now = datetime.now(UTC)
    job = await OutboxJob.create(kind="test.work", dedupe_key="test:poison", payload={}, state=JobState.RUNNING,
                                 attempts=FAST.max_attempts, next_attempt_at=now, locked_by="gone:9",
                                 lease_until=now - timedelta(seconds=1))
    await run_due_jobs(app, FAST)
    dead = await OutboxJob.get(id=job.id)
    assert dead.state == JobState.DEAD and "最大尝试次数" in dead.last_error


async def test_only_kinds_with_a_handler_here_are_claimed(client, kinds):
    app = client.server.app
    job = await enqueued("test.nobody_handles_this", {}, "test:orphan")
    assert await run_due_jobs(app, FAST) == 0
    assert (await OutboxJob.get(id=job.id)).state == JobState.PENDING


async def test_a_job_due_later_waits_for_its_time(client, kinds):
    app = client.server.app
    runs = []

    async def work(ctx):
        runs.append(1)

    kinds("test.work", work)
    job = await enqueued("test.work", {}, "test:later", run_at=datetime.now(UTC) + timedelta(seconds=0.3))
    assert await run_due_jobs(app, FAST) == 0
    await asyncio.sleep(0.35)
    assert await run_due_jobs(app, FAST) == 1 and runs == [1]
    assert (await OutboxJob.get(id=job.id)).state == JobState.DONE


async def test_two_dispatchers_never_claim_the_same_job(client, kinds):
    app = client.server.app
    runs: list[int] = []

    async def work(ctx):
        runs.append(ctx.job.id)
        await asyncio.sleep(0)

    kinds("test.work", work)
    for n in range(120):
        await OutboxJob.create(kind="test.work", dedupe_key=f"test:many:{n}", payload={},
                               next_attempt_at=datetime.now(UTC))
    config = replace(FAST, concurrency=7)
    first, second = Dispatcher(app, config), Dispatcher(app, config)
    counts = await asyncio.gather(first.drain(), second.drain())
    assert sum(counts) == 120 and sorted(runs) == sorted(set(runs)) and len(runs) == 120
    assert await OutboxJob.filter(state=JobState.DONE).count() == 120


async def test_the_embedded_dispatcher_is_woken_by_enqueue_not_by_polling(dispatching, kinds):
    finished: dict[str, float] = {}

    async def work(ctx):
        finished[ctx.job.dedupe_key] = time.monotonic()

    kinds("test.work", work)
    await asyncio.sleep(0.1)  # the dispatcher's first poll has found nothing; the next poll is 30 s away
    started = time.monotonic()
    job = await enqueued("test.work", {}, "test:wake")
    await eventually(lambda: job_in(job.id, JobState.DONE), timeout=2)
    assert finished["test:wake"] - started < 1.0

    # Woken before its transaction commits: the dispatcher's settle re-checks still find it soon after.
    started = time.monotonic()
    async with in_transaction():
        late = await enqueued("test.work", {}, "test:wake-late")
        await asyncio.sleep(0.3)
    await eventually(lambda: job_in(late.id, JobState.DONE), timeout=3)
    assert finished["test:wake-late"] - started < 2.0


async def test_a_published_wake_up_reaches_a_listening_dispatcher(settings):
    from kv import connect

    kv = connect(settings.redis_url, settings.redis_prefix)
    woken = asyncio.Event()

    class Probe:
        def wake(self):
            woken.set()

    listener = asyncio.create_task(listen(kv, Probe()))
    try:
        async def publish_until_heard():
            await kv.publish(CHANNEL, "1")  # the subscription may take a moment to start
            return woken.is_set()

        await eventually(publish_until_heard, timeout=5, interval=0.05)
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await kv.close()


async def test_stopping_hands_unfinished_jobs_back(dispatching, kinds, monkeypatch):
    app = dispatching.server.app
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(ctx):
        started.set()
        await release.wait()

    kinds("test.slow", slow)
    monkeypatch.setattr(dispatcher_module, "STOP_GRACE", 0.1)
    job = await enqueued("test.slow", {}, "test:slow")
    await asyncio.wait_for(started.wait(), 3)
    dispatcher = app[DISPATCHER]
    dispatcher.stop()
    await eventually(lambda: job_in(job.id, JobState.PENDING), timeout=3)
    back = await OutboxJob.get(id=job.id)
    assert back.locked_by == "" and back.lease_until is None and back.attempts == 1


async def test_the_probe_reaches_the_sandbox_once_and_faults_are_retried(dispatching, kinds):
    client = dispatching
    await client.post("/wechat-sandbox/sandbox/login-code", json={"openid": "o_probe"})
    # WeChat busy twice, then fine: retried, and delivered exactly once.
    await client.post("/wechat-sandbox/sandbox/faults", json={"endpoint": "/cgi-bin/message/custom/send",
                                                               "errcode": -1, "count": 2})
    job = await enqueue_probe("o_probe", "probe:1")
    await eventually(lambda: job_in(job.id, JobState.DONE), timeout=5)
    messages = (await (await client.get("/wechat-sandbox/sandbox/messages", params={"touser": "o_probe"})).json())
    assert [m["payload"]["content"] for m in messages["items"]] == [probe_text("probe:1")]
    assert (await OutboxJob.get(id=job.id)).attempts == 3
    # An unknown recipient is refused for good.
    refused = await enqueue_probe("o_nobody", "probe:2")
    await eventually(lambda: job_in(refused.id, JobState.DEAD), timeout=5)
    assert "40003" in (await OutboxJob.get(id=refused.id)).last_error
    assert PROBE in HANDLERS


async def test_deliver_once_never_repeats_a_send_across_a_crash(client, kinds):
    app = client.server.app
    kv = app[KV_STORE]
    sends: list[int] = []
    fail_next = []

    async def send(ctx):
        async def call():
            if fail_next:
                fail_next.pop()
                raise TemporaryFailure("微信繁忙")
            sends.append(ctx.job.attempts)
            return "msgid"

        await deliver_once(ctx, call)

    kinds("test.send", send)
    now = datetime.now(UTC)

    # 1. A failed call clears its marker: the retry sends.
    fail_next.append(1)
    job = await enqueued("test.send", {}, "test:send:1")
    await run_until(app, FAST, job.id, JobState.DONE)
    assert sends == [2]
    assert await kv.get(marker_key(job.id)) == f"{SENT}:2".encode()

    # 2. The worker died after the send and before the done mark: the take-over does not send again.
    await OutboxJob.filter(id=job.id).update(state=JobState.RUNNING, lease_until=now - timedelta(seconds=1),
                                             locked_by="gone:1")
    await run_due_jobs(app, FAST)
    assert sends == [2] and (await OutboxJob.get(id=job.id)).state == JobState.DONE

    # 3. The worker died while its request was in flight: unknown outcome, dead rather than maybe twice...
    crashed = await OutboxJob.create(kind="test.send", dedupe_key="test:send:2", payload={}, state=JobState.RUNNING,
                                     attempts=1, next_attempt_at=now, lease_until=now - timedelta(seconds=1),
                                     locked_by="gone:2")
    await kv.set(marker_key(crashed.id), "sending:1", ex=60)
    await run_due_jobs(app, FAST)
    unknown = await OutboxJob.get(id=crashed.id)
    assert unknown.state == JobState.DEAD and "无法确认" in unknown.last_error and sends == [2]
    # ...until an admin, having checked with the recipient, retries it: then it is sent once.
    await retry_job(crashed.id)
    await run_due_jobs(app, FAST)
    assert sends == [2, 1] and (await OutboxJob.get(id=crashed.id)).state == JobState.DONE


async def test_a_timer_given_in_china_time_fires_at_that_instant(client):
    """SQLite compares stored times as text: enqueue must store run_at in UTC whatever its offset."""
    from datetime import timedelta

    from models import OutboxJob
    from outbox.jobs import enqueue
    from timeutil import CHINA_TZ, utcnow

    soon = (utcnow() - timedelta(seconds=1)).astimezone(CHINA_TZ)
    await enqueue("probe.cs_message", {}, dedupe_key="tz-probe", run_at=soon)
    due = await OutboxJob.filter(dedupe_key="tz-probe", next_attempt_at__lte=utcnow()).exists()
    assert due, "a job due one second ago (given in +08:00) must be due now"
