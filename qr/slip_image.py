"""The slip's QR code as PNG and SVG. CPU-bound (15-30 ms each): call these in an executor, never on the loop."""

from __future__ import annotations

import io

import qrcode
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.svg import SvgPathImage

# A slip token fits a version-11 symbol (61 modules) at level M; 10 px per module and the standard 4-module
# quiet zone make a 690 px image, which a desk scanner reads off a phone screen held at arm's length.
BOX_SIZE = 10
BORDER = 4


def _code(content: str, **kwargs) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=BOX_SIZE, border=BORDER, **kwargs)
    code.add_data(content)
    code.make(fit=True)
    return code


def render_png(content: str) -> bytes:
    """A black-on-white PNG of ``content`` at error-correction level M."""
    buffer = io.BytesIO()
    _code(content).make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def render_svg(content: str) -> bytes:
    """The same symbol as a single-path SVG (scales to any screen or printer)."""
    buffer = io.BytesIO()
    _code(content, image_factory=SvgPathImage).make_image().save(buffer)
    return buffer.getvalue()
