"""Transactional outbox: jobs written in the same transaction as the change that causes them (`outbox.jobs`),
carried out by a dispatcher (`outbox.dispatcher`) with leases, retries and dead letters.

`setup(app)` imports the job-handler modules (so web and worker processes know the same kinds), registers
the app's wake-up publisher and, with BACKGROUND_TASKS and EMBEDDED_DISPATCHER, runs a dispatcher inside
the process, listening for wake-ups on the KV store. `python app.py worker` runs the same app without a
listener and always with the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

import kv
from appkeys import KV_STORE, SETTINGS
from kv import KV
from outbox import admin
from outbox.dispatcher import Dispatcher, DispatcherConfig
from outbox.wakeup import CHANNEL, Waker, register, unregister

log = logging.getLogger("referral_cloud.outbox")

# Modules whose import registers job handlers (outbox.registry.handler); a kind is only claimed by processes
# that have its handler, so every process must import the same list.
HANDLER_MODULES = ["his.jobs", "referrals.orders", "slips.jobs", "notifications.handlers", "bot.jobs",
                   "outbox.probe", "chat.jobs"]

DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("outbox_dispatcher", Dispatcher)
# How long a stopping dispatcher may take: its shutdown grace plus the slowest handler it lets finish.
STOP_TIMEOUT = 30.0
PURGE_EVERY = 3600.0  # seconds between two deletions of old finished jobs


def setup(app: web.Application) -> None:
    """Call after the database, KV, WeChat and HIS are set up: their clean-ups must run after the dispatcher's."""
    for name in HANDLER_MODULES:
        importlib.import_module(name)
    app.cleanup_ctx.append(_outbox)


async def _outbox(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    dispatcher: Dispatcher | None = None
    if settings.background_tasks and settings.embedded_dispatcher:
        dispatcher = Dispatcher(app, DispatcherConfig.from_settings(settings))
        app[DISPATCHER] = dispatcher
    waker = Waker(app[KV_STORE], dispatcher.wake if dispatcher else None)
    register(waker)
    tasks: list[asyncio.Task] = []
    purger: asyncio.Task | None = None
    if dispatcher is not None:
        tasks = [asyncio.create_task(listen(app[KV_STORE], dispatcher), name="outbox-listener"),
                 asyncio.create_task(dispatcher.run(), name="outbox-dispatcher")]
        tasks[1].add_done_callback(_report_exit)
        if settings.outbox_keep_done_days > 0:
            purger = asyncio.create_task(purge_finished(settings.outbox_keep_done_days), name="outbox-purge")
    try:
        yield
    finally:
        unregister(waker)
        if purger is not None:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
        if dispatcher is not None:
            listener, runner = tasks
            await kv.stop(listener)
            dispatcher.stop()
            try:
                await asyncio.wait_for(runner, STOP_TIMEOUT)
            except TimeoutError:
                log.warning("outbox dispatcher did not stop within %ss", STOP_TIMEOUT)
            except Exception:  # noqa: S110  (already reported by _report_exit)
                pass
        await waker.close()


def _report_exit(task: asyncio.Task) -> None:
    """A dispatcher only ends when told to; say so loudly if it died of a bug instead."""
    if not task.cancelled() and task.exception() is not None:
        log.error("outbox dispatcher died; jobs wait for another process", exc_info=task.exception())


async def listen(store: KV, dispatcher: Dispatcher) -> None:
    """Wake the dispatcher on every published wake-up; outlive KV outages (polling covers them)."""
    await kv.listen(store, CHANNEL, dispatcher.wake, fallback="the outbox polls")


async def purge_finished(keep_days: int, *, every: float = PURGE_EVERY) -> None:
    """Delete finished jobs older than `keep_days` now and every `every` seconds, so the table does not grow
    for ever (each dispatcher does it; deleting the same rows twice is harmless)."""
    while True:
        try:
            removed = await admin.purge_done(timedelta(days=keep_days))
            if removed:
                log.info("outbox: deleted %d finished jobs older than %d days", removed, keep_days)
        except Exception as exc:
            log.warning("outbox: deleting old finished jobs failed (%s); trying again later", type(exc).__name__)
        await asyncio.sleep(every)


async def run_due_jobs(app: web.Application, config: DispatcherConfig | None = None) -> int:
    """Run every due job now, until none is due, in this task (tests and benches that want no background)."""
    config = config or DispatcherConfig.from_settings(app[SETTINGS])
    return await Dispatcher(app, config).drain()
