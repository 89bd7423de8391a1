"""Signed, short-lived URLs for a slip's images. A mini-program's ``<image src>`` sends no Authorization header,
so the URLs a slip view hands out carry their own proof instead:

    /api/v1/slips/{code}/qr.png?expires=<unix seconds>&sig=<base64url HMAC-SHA256>

The HMAC covers the image name, the slip code and the expiry, under a key derived from JWT_SECRET (so a
deployment has nothing new to manage); a URL lives SLIP_IMAGE_URL_TTL seconds. Nothing personal is in it: the
slip code is a random reference, and the image itself shows only the signed slip token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

from errors import Forbidden

# Each image and the field of the slip view that carries its URL.
IMAGES = {"qr.png": "qr_png_url", "qr.svg": "qr_svg_url", "wxacode.png": "wxacode_url"}
KEY_LABEL = b"referral-cloud slip image url v1"


def url_key(jwt_secret: str) -> bytes:
    """The signing key: derived from JWT_SECRET with a label of its own, never the token key itself."""
    return hmac.new(jwt_secret.encode(), KEY_LABEL, hashlib.sha256).digest()


def signature(key: bytes, image: str, code: str, expires: int) -> str:
    mac = hmac.new(key, f"{image}|{code}|{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


@dataclass(frozen=True)
class ImageLinks:
    """How slip views write image URLs: absolute (`base_url`), signed with `key`, valid for `ttl` seconds."""

    base_url: str
    key: bytes
    ttl: int

    def urls(self, code: str, *, now: float | None = None) -> dict[str, str]:
        expires = int(now if now is not None else time.time()) + self.ttl
        root = f"{self.base_url.rstrip('/')}/api/v1/slips/{code}"
        return {field: f"{root}/{name}?expires={expires}&sig={signature(self.key, name, code, expires)}"
                for name, field in IMAGES.items()}


def check(key: bytes, image: str, code: str, expires: str, sig: str, *, now: float | None = None) -> None:
    """Accept a signed image URL, or raise: a URL altered in any part, or one past its expiry, opens nothing."""
    if not expires.isdigit() or len(expires) > 12 or not hmac.compare_digest(
            signature(key, image, code, int(expires)), sig):
        raise Forbidden("图片链接无效，请重新打开入院凭条页面", code="SLIP_IMAGE_URL_INVALID")
    if int(expires) < (now if now is not None else time.time()):
        raise Forbidden("图片链接已过期，请重新打开入院凭条页面", code="SLIP_IMAGE_URL_EXPIRED")
