"""Conversations of consultations and ward rounds: messages, read marks, and the realtime hub that delivers
them over WebSockets (fanned out between `web` processes over the KV store's pub/sub)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from appkeys import KV_STORE


def setup(app: web.Application) -> None:
    """The hub of this process (one cleanup context: its listener, publisher and presence tasks) and the ticket
    redeemer; open sockets are closed when the server shuts down, before the hub stops."""
    app.cleanup_ctx.append(_hub)
    app.on_shutdown.append(_close_sockets)


async def _hub(app: web.Application) -> AsyncIterator[None]:
    from chat import hub, realtime, tickets

    app[realtime.NOTIFY_MEMO] = realtime.messages.NotifyMemo()
    app[realtime.REDEEMER] = tickets.Redeemer(app[KV_STORE])
    async with hub.running(app[KV_STORE], realtime.render) as running:
        app[realtime.HUB] = running
        yield


async def _close_sockets(app: web.Application) -> None:
    from chat import realtime

    if realtime.HUB in app:
        await app[realtime.HUB].close_sockets()
