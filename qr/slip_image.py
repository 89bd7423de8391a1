"""The slip's QR code as PNG and SVG. CPU-bound (15-30 ms each): call these in an executor, never on the loop."""

from __future__ import annotations

from qr import render

# A slip token fits a version-11 symbol (61 modules) at level M; 10 px per module and the standard 4-module
# quiet zone make a 690 px image, which a desk scanner reads off a phone screen held at arm's length.
BOX_SIZE = 10
BORDER = 4


def render_png(content: str) -> bytes:
    """A black-on-white PNG of ``content`` at error-correction level M."""
    return render.render_png(content, box_size=BOX_SIZE, border=BORDER)


def render_svg(content: str) -> bytes:
    """The same symbol as a single-path SVG (scales to any screen or printer)."""
    return render.render_svg(content, box_size=BOX_SIZE, border=BORDER)
