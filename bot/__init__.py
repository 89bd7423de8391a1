"""WeChat message-push endpoint: signature, AES safe mode, events, chat commands (issue 5)."""

from __future__ import annotations

from aiohttp import web


def setup(app: web.Application) -> None:
    """Install `GET`/`POST /wechat/push` and register the `bot.message` job handler."""
    from bot import jobs  # noqa: F401  (registers the job handler)
    from bot.routes import api

    api.install(app)
