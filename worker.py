"""`python app.py worker`: the app's background tasks (the outbox dispatcher, the token keeper) without an HTTP
listener, so they scale apart from `web`.

The worker builds the same app as `web` (same handlers, same clean-ups) but never serves its routes. The HTTP
parts are harmless here: routes are only a table, and the embedded WeChat sandbox and HIS simulator (when no
WECHAT_API_BASE / HIS URL is configured) listen on loopback ports of their own, so a worker started that way
talks to a private sandbox nobody else sees. That is what the warning below says."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import replace

from aiohttp import web

from settings import Settings

log = logging.getLogger("referral_cloud.worker")


async def run_worker(settings: Settings) -> None:
    from app import create_app
    from outbox import DISPATCHER

    # A worker exists to dispatch: whatever BACKGROUND_TASKS and EMBEDDED_DISPATCHER say for `web`.
    settings = replace(settings, background_tasks=True, embedded_dispatcher=True)
    if settings.embedded_wechat:
        log.warning("worker without WECHAT_API_BASE: messages go to this process's own sandbox, not to WeChat")
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()  # runs every cleanup context: database, KV, WeChat, HIS, the dispatcher
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker %s started", app[DISPATCHER].worker_id)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("worker stopped")
