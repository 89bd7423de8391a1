"""WeChat: the async HTTP client (wechatpy only for crypto and parsing), the shared access token,
and the sandbox that stands in for WeChat in tests and the demo."""

from aiohttp import web


def setup(app: web.Application) -> None:
    """Install the WeChat HTTP session, the embedded sandbox and the token keeper (cleanup contexts)."""
