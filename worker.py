"""`python app.py worker`: the app's background tasks (token keeper; later the outbox dispatcher and
timers) without an HTTP listener, so they scale apart from `web`."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from settings import Settings

log = logging.getLogger("referral_cloud.worker")


async def run_worker(settings: Settings) -> None:
    from app import create_app

    runner = web.AppRunner(create_app(settings), handle_signals=False)
    await runner.setup()  # runs every cleanup context: database, KV, WeChat, background tasks
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker started")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        log.info("worker stopped")
