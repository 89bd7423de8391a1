"""WeChat: the async HTTP client (wechatpy only for crypto and parsing), the shared access token,
and the sandbox that stands in for WeChat in tests and the demo."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

import kv
from appkeys import HTTP, KV_STORE, SETTINGS, WECHAT, WECHAT_SANDBOX
from wechat.client import WeChatClient
from wechat.errors import WeChatError

log = logging.getLogger("referral_cloud.wechat")

# Where the client sends its calls; set by the embedded sandbox's context, else WECHAT_API_BASE.
API_BASE: web.AppKey[str] = web.AppKey("wechat_api_base", str)
# How long the token keeper waits after a failed refresh before trying again.
KEEPER_RETRY = 30.0


def setup(app: web.Application) -> None:
    """Install the WeChat HTTP session, the embedded sandbox and the token keeper (cleanup contexts)."""
    settings = app[SETTINGS]
    app.cleanup_ctx.append(_http_session)
    if settings.embedded_wechat:
        # Imported only here: with a real WECHAT_API_BASE the sandbox (and qrcode) is never loaded.
        from wechat.sandbox import SandboxState, create_sandbox_app

        state = SandboxState(settings.wechat_appid, settings.wechat_secret)
        app[WECHAT_SANDBOX] = state
        # The same state on two doors: its own port for our client, /wechat-sandbox/ for tests and humans.
        app.add_subapp("/wechat-sandbox/", create_sandbox_app(state))
        app.cleanup_ctx.append(_embedded_sandbox)
    else:
        app[API_BASE] = settings.wechat_api_base
    app.cleanup_ctx.append(_client)
    if settings.background_tasks:
        app.cleanup_ctx.append(_token_keeper)


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    """One outgoing HTTP session for the process; each caller sets its own per-request timeout, and the
    session default is only a backstop so that nothing waits aiohttp's five minutes."""
    settings = app[SETTINGS]
    backstop = aiohttp.ClientTimeout(total=max(settings.wechat_timeout, settings.his_timeout))
    async with aiohttp.ClientSession(timeout=backstop) as session:
        app[HTTP] = session
        yield


async def _embedded_sandbox(app: web.Application) -> AsyncIterator[None]:
    """The sandbox on an ephemeral loopback port, so the client makes real HTTP calls as in production."""
    from wechat.sandbox import create_sandbox_app
    from wechat.sandbox.app import PathOnlyAccessLogger

    # A short shutdown timeout: a test may leave a delayed (fault-injected) call pending.
    runner = web.AppRunner(create_sandbox_app(app[WECHAT_SANDBOX]), access_log_class=PathOnlyAccessLogger,
                           shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    app[API_BASE] = f"http://{host}:{port}"
    app[WECHAT_SANDBOX].open_state(app[SETTINGS].data_dir)  # subscriptions and messages survive a restart
    try:
        yield
    finally:
        await runner.cleanup()
        app[WECHAT_SANDBOX].close_state()


async def _client(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[WECHAT] = WeChatClient(app[HTTP], app[KV_STORE], appid=settings.wechat_appid, secret=settings.wechat_secret,
                               base_url=app[API_BASE], timeout=settings.wechat_timeout)
    yield


async def _token_keeper(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(keep_token_fresh(app[WECHAT]), name="wechat-token-keeper")
    yield
    await kv.stop(task)


async def keep_token_fresh(client: WeChatClient, *, retry_after: float = KEEPER_RETRY) -> None:
    """Keep the shared token fresh: refresh when due, then sleep until shortly before the next refresh.

    Every web process runs one; the KV lock lets only one of them fetch, the others find the new token."""
    while True:
        try:
            # A little jitter so keepers of several processes do not all wake in the same instant.
            delay = max(await client.ensure_token(), 1.0) + random.uniform(0, 5)
        except WeChatError as exc:
            log.warning("WeChat token keeper: refresh failed with errcode %s; retrying in %ss", exc.errcode,
                        retry_after)
            delay = retry_after
        except Exception as exc:  # the KV store may be briefly unreachable; the keeper must outlive that
            log.warning("WeChat token keeper: %s; retrying in %ss", type(exc).__name__, retry_after)
            delay = retry_after
        await asyncio.sleep(delay)
