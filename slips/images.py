"""A slip's pictures: its QR code (PNG/SVG, rendered in an executor, once per token) and its mini-program code
(``wxacode.getUnlimited`` with scene = the slip code, fetched once per code). Both are cached in memory."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Literal

from errors import UpstreamUnavailable
from qr.cache import ImageCache
from qr.slip_image import render_png, render_svg
from wechat.client import WeChatClient
from wechat.errors import WeChatError

# The mini-program page that shows a slip; it reads the code from decodeURIComponent(query.scene).
SLIP_PAGE = "pages/slip/index"
WXACODE_WIDTH = 430

Format = Literal["png", "svg"]
CACHE = ImageCache()
_RENDERERS = {"png": render_png, "svg": render_svg}


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def qr_etag(token: str, fmt: Format) -> str:
    return f'"{token_digest(token)[:32]}-{fmt}"'


def wxacode_etag(code: str) -> str:
    return f'"{hashlib.sha256(f"{SLIP_PAGE}?scene={code}".encode()).hexdigest()[:32]}-wxa"'


async def qr_image(token: str, fmt: Format) -> bytes:
    """The QR code of ``token``; rendering (15-30 ms of CPU) happens in the default executor."""
    loop = asyncio.get_running_loop()
    render = _RENDERERS[fmt]
    return await CACHE.get(f"{fmt}:{token_digest(token)}", lambda: loop.run_in_executor(None, render, token))


async def wxacode(wechat: WeChatClient, code: str) -> bytes:
    """The mini-program code that opens the slip page for ``code`` (never expires, so cached for good)."""
    try:
        return await CACHE.get(f"wxa:{SLIP_PAGE}:{WXACODE_WIDTH}:{code}",
                               lambda: wechat.get_unlimited_wxacode(scene=code, page=SLIP_PAGE, width=WXACODE_WIDTH))
    except WeChatError as exc:
        raise UpstreamUnavailable("暂时无法获取小程序码，请稍后再试", code="WXACODE_UNAVAILABLE",
                                  detail={"errcode": exc.errcode}) from None
