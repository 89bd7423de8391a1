"""WeChat message-push endpoint: signature, AES safe mode, events, chat commands (issue 5)."""

from aiohttp import web


def setup(app: web.Application) -> None:
    """The push endpoint arrives with the outbox (issue 5); nothing to install yet."""
