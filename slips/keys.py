"""The Ed25519 keys that sign slips: stored in SigningKey with the private half encrypted by DATA_KEY.

The newest unretired key signs new slips; a slip keeps the kid it was signed with, so rotating never changes
the token of a slip already issued. Retired keys go on verifying, and stay in the JWKS while any slip they
signed is still open. Keys are immutable once written, so their parsed forms are cached per process by kid."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from tortoise.transactions import in_transaction

from appkeys import CIPHER
from models import SigningKey, Slip, SlipState
from qr.slip_token import public_jwk
from security.crypto import PersonalDataCipher

PURPOSE = "slip"
_KID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
_CIPHER_CONTEXT = "signing_key.private_key"

_private: dict[str, Ed25519PrivateKey] = {}
_public: dict[str, Ed25519PublicKey] = {}


def _new_kid() -> str:
    return "k" + "".join(secrets.choice(_KID_ALPHABET) for _ in range(8))


async def create_key(cipher: PersonalDataCipher) -> SigningKey:
    """A fresh key pair, stored; it becomes the one that signs (being the newest)."""
    private = Ed25519PrivateKey.generate()
    pkcs8 = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode("ascii")
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    key = await SigningKey.create(kid=_new_kid(), purpose=PURPOSE, public_key=public,
                                  private_key_enc=cipher.encrypt(pkcs8, _CIPHER_CONTEXT))
    _private[key.kid] = private
    return key


async def current_kid() -> str:
    """The kid new slips are signed with, or "" before the first key exists (made at start-up, see below)."""
    key = await SigningKey.filter(purpose=PURPOSE, retired_at=None).order_by("-id").first()
    return key.kid if key else ""


async def signing_kid(cipher: PersonalDataCipher) -> str:
    """The current kid, creating the installation's first key on first use."""
    kid = await current_kid()
    if kid:
        return kid
    return (await create_key(cipher)).kid


async def private_key(cipher: PersonalDataCipher, kid: str) -> Ed25519PrivateKey:
    cached = _private.get(kid)
    if cached is not None:
        return cached
    row = await SigningKey.get(kid=kid, purpose=PURPOSE)
    loaded = serialization.load_pem_private_key(cipher.decrypt(row.private_key_enc, _CIPHER_CONTEXT).encode(),
                                                password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"signing key {kid} is not an Ed25519 key")
    _private[kid] = loaded
    return loaded


def _load_public(pem: str) -> Ed25519PublicKey:
    loaded = serialization.load_pem_public_key(pem.encode())
    if not isinstance(loaded, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return loaded


async def public_key(kid: str) -> Ed25519PublicKey | None:
    """The verifying key for ``kid`` (retired keys included), or None when no such key was ever made here."""
    cached = _public.get(kid)
    if cached is not None:
        return cached
    row = await SigningKey.get_or_none(kid=kid, purpose=PURPOSE)
    if row is None:
        return None
    _public[kid] = _load_public(row.public_key)
    return _public[kid]


async def rotate(cipher: PersonalDataCipher) -> tuple[SigningKey, list[str]]:
    """Make a new signing key and retire the others; returns the new key and the kids retired."""
    now = datetime.now(UTC)
    async with in_transaction():
        retired = list(await SigningKey.filter(purpose=PURPOSE, retired_at=None).values_list("kid", flat=True))
        await SigningKey.filter(purpose=PURPOSE, retired_at=None).update(retired_at=now)
        key = await create_key(cipher)
    return key, retired  # type: ignore[return-value]


async def published_keys() -> list[SigningKey]:
    """The keys a verifier needs: every unretired key, and retired keys that signed a slip still open."""
    now = datetime.now(UTC)
    keys = await SigningKey.filter(purpose=PURPOSE).order_by("-id")
    retired = [k.kid for k in keys if k.retired_at is not None]
    still_needed = set(await Slip.filter(kid__in=retired, state__in=[SlipState.ACTIVE, SlipState.USED],
                                         expires_at__gt=now).distinct().values_list("kid", flat=True)) \
        if retired else set()
    return [k for k in keys if k.retired_at is None or k.kid in still_needed]


async def jwks() -> dict:
    """The JWKS document desk devices fetch to verify slips offline."""
    return {"keys": [public_jwk(_public.get(k.kid) or _load_public(k.public_key), k.kid)
                     for k in await published_keys()]}


async def published_from_start(app: web.Application) -> AsyncIterator[None]:
    """Start-up: make the installation's first signing key if there is none, so the JWKS carries the key that
    will sign from the first request on (a desk that caches the JWKS at start-up can verify offline at once).
    Two processes starting together may both make one; both are published and the newest signs, so that race
    costs nothing but an extra key."""
    await signing_kid(app[CIPHER])
    yield
