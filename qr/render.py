"""QR images: PNG and SVG at error-correction level M. CPU-bound (15-30 ms each): call these in an
executor, never on the event loop."""

from __future__ import annotations

import base64
import io

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.svg import SvgPathImage


def _code(content: str, box_size: int, border: int, **kwargs) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=border, **kwargs)
    code.add_data(content)
    code.make(fit=True)
    return code


def render_png(content: str, *, box_size: int = 8, border: int = 4) -> bytes:
    """A black-on-white PNG of `content`."""
    buffer = io.BytesIO()
    _code(content, box_size, border).make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def render_svg(content: str, *, box_size: int = 8, border: int = 4) -> bytes:
    """The same symbol as a single-path SVG (scales to any screen or printer)."""
    buffer = io.BytesIO()
    _code(content, box_size, border, image_factory=SvgPathImage).make_image().save(buffer)
    return buffer.getvalue()


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
