"""The slip token and QR pieces on their own (no app): signing, every verdict, offline verification with a
JWKS document, verification cost, the rendered symbol, and the image cache's once-only rendering."""

from __future__ import annotations

import asyncio
import io

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

from qr import slip_token
from qr.cache import ImageCache
from qr.slip_image import render_png, render_svg
from qr.slip_token import (
    SlipTokenError,
    keys_from_jwks,
    public_jwk,
    sign,
    token_kid,
    verify,
    verify_offline,
)
from tests.support import read_qr

KEY = Ed25519PrivateKey.generate()
KID = "kTESTKEY1"
NOW = 1_800_000_000
EXPIRES = NOW + 36 * 3600


def token(**overrides) -> str:
    args = {"code": "RYK7QM3P2A", "institution": "SUBEI", "expires_at": EXPIRES} | overrides
    return sign(KEY, KID, **args)


def verdict(candidate: object, key=KEY.public_key(), institution: str = "SUBEI", now: float = NOW) -> str:
    try:
        verify(candidate, key, institution, now=now)
    except SlipTokenError as exc:
        return exc.code
    return slip_token.VALID


def test_a_token_round_trips_and_is_deterministic():
    issued = token()
    assert issued == token()  # Ed25519 signatures are deterministic: one token, one QR image per slip and key
    claims = verify(issued, KEY.public_key(), "SUBEI", now=NOW)
    assert claims == slip_token.SlipClaims(code="RYK7QM3P2A", institution="SUBEI", expires_at=EXPIRES, kid=KID)
    assert jwt.get_unverified_header(issued) == {"alg": "EdDSA", "kid": KID, "typ": "rc-slip"}
    assert set(jwt.decode(issued, options={"verify_signature": False})) == {"sub", "aud", "exp"}
    assert len(issued) < 300 and token_kid(issued) == KID


def test_each_failure_has_its_own_verdict():
    issued = token()
    header, payload, signature = issued.split(".")
    other_payload = token(code="RY23456789").split(".")[1]
    assert verdict(issued) == slip_token.VALID
    assert verdict(issued, key=None) == slip_token.UNKNOWN_KEY
    assert verdict(issued, key=Ed25519PrivateKey.generate().public_key()) == slip_token.BAD_SIGNATURE
    assert verdict(f"{header}.{other_payload}.{signature}") == slip_token.BAD_SIGNATURE
    assert verdict(f"{header}.{payload}.{signature[:-4]}AAAA") == slip_token.BAD_SIGNATURE
    # Altered so that it no longer even decodes: not a slip token at all.
    assert verdict(f"{header}.{payload}!.{signature}") == slip_token.MALFORMED
    assert verdict(issued, institution="BAOYING") == slip_token.OTHER_INSTITUTION
    assert verdict(issued, now=EXPIRES) == slip_token.EXPIRED
    assert verdict(issued, now=EXPIRES - 1) == slip_token.VALID
    for garbage in ("", "hello", "a.b.c", "a..c", None, 42, "x" * 5000, issued + ".more",
                    jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256"),
                    jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256", headers={"kid": KID, "typ": "rc-slip"})):
        assert verdict(garbage) == slip_token.MALFORMED, garbage
    # Another hospital's expired slip says "another hospital": the hospital is checked before the expiry.
    assert verdict(issued, institution="BAOYING", now=EXPIRES + 1) == slip_token.OTHER_INSTITUTION
    # A forged token is "forged" whatever it claims.
    assert verdict(issued, key=Ed25519PrivateKey.generate().public_key(), now=EXPIRES + 1) == slip_token.BAD_SIGNATURE


def test_refusals_carry_the_claims_once_the_signature_holds():
    with pytest.raises(SlipTokenError) as caught:
        verify(token(), KEY.public_key(), "BAOYING", now=NOW)
    assert caught.value.claims is not None and caught.value.claims.institution == "SUBEI"
    assert "不是本院" in caught.value.message
    with pytest.raises(SlipTokenError) as caught:
        verify(token(), None, "SUBEI", now=NOW)
    assert caught.value.claims is None


def test_offline_verification_needs_only_the_jwks_document():
    other = Ed25519PrivateKey.generate()
    document = {"keys": [public_jwk(KEY.public_key(), KID), public_jwk(other.public_key(), "kOTHER001"),
                         {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}]}
    assert set(keys_from_jwks(document)) == {KID, "kOTHER001"}
    assert "d" not in document["keys"][0]
    assert verify_offline(token(), document, "SUBEI", now=NOW).code == "RYK7QM3P2A"
    assert verify_offline(sign(other, "kOTHER001", code="RY2", institution="SUBEI", expires_at=EXPIRES), document,
                          "SUBEI", now=NOW).kid == "kOTHER001"
    for candidate, institution, expected in [
        (sign(Ed25519PrivateKey.generate(), "kNOTOURS1", code="RY3", institution="SUBEI", expires_at=EXPIRES),
         "SUBEI", slip_token.UNKNOWN_KEY),
        (token(), "BAOYING", slip_token.OTHER_INSTITUTION),
        ("garbage", "SUBEI", slip_token.MALFORMED),
    ]:
        with pytest.raises(SlipTokenError) as caught:
            verify_offline(candidate, document, institution, now=NOW)
        assert caught.value.code == expected
    # PyJWT alone agrees.
    key = jwt.PyJWKSet.from_dict(document)[KID].key
    assert jwt.decode(token(), key, algorithms=["EdDSA"], audience="SUBEI",
                      options={"verify_exp": False})["sub"] == "RYK7QM3P2A"


def test_png_is_a_readable_level_m_symbol_big_enough_for_a_desk_scanner():
    issued = token()
    png = render_png(issued)
    image = Image.open(io.BytesIO(png))
    assert image.size[0] == image.size[1] >= 600
    barcode = read_qr(image)
    assert barcode.text == issued and barcode.ec_level == "M"
    svg = render_svg(issued)
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b"<path" in svg


async def test_the_cache_renders_once_for_concurrent_callers_and_keeps_no_failures():
    cache = ImageCache(max_items=2)
    calls = []

    async def produce(value: bytes) -> bytes:
        calls.append(value)
        await asyncio.sleep(0.01)
        return value

    results = await asyncio.gather(*[cache.get("a", lambda: produce(b"A")) for _ in range(20)])
    assert results == [b"A"] * 20 and calls == [b"A"] and cache.misses == 1
    assert await cache.get("a", lambda: produce(b"other")) == b"A" and cache.hits == 1

    async def broken() -> bytes:
        raise RuntimeError("render failed")

    with pytest.raises(RuntimeError):
        await cache.get("b", broken)
    assert cache.peek("b") is None
    assert await cache.get("b", lambda: produce(b"B")) == b"B"
    await cache.get("c", lambda: produce(b"C"))
    assert len(cache) == 2 and cache.peek("a") is None  # least recently used goes first


async def test_a_caller_that_goes_away_does_not_cancel_the_render():
    cache = ImageCache()
    started = asyncio.Event()

    async def slow() -> bytes:
        started.set()
        await asyncio.sleep(0.05)
        return b"done"

    first = asyncio.create_task(cache.get("k", slow))
    await started.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await cache.get("k", slow) == b"done" and cache.misses == 1
