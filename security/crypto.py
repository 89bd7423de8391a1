"""Encryption at rest for ID and phone numbers (AES-256-GCM) and keyed hashes for exact lookup (HMAC-SHA256).

Tokens look like `v1.<base64url(nonce + ciphertext + tag)>`; the version names the key and scheme, so a
later key can be added as v2 while v1 rows are still readable and get re-encrypted at leisure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from security.idcard import normalise_id_number, normalise_phone

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12  # 96 bits: the size GCM is defined for; random nonces are safe far beyond our row counts
TAG_BYTES = 16
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

# Lookup hashes are stored and compared, so each kind's normalisation is part of the stored format.
_NORMALISERS = {
    "id_number": normalise_id_number,
    "phone": normalise_phone,
}


class DecryptionError(Exception):
    """A token that is malformed, tampered with, bound to another field or made with another key."""


def generate_key() -> str:
    """A fresh 32-byte key as urlsafe base64, the form DATA_KEY and LOOKUP_KEY are given in."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


class PersonalDataCipher:
    def __init__(self, data_key: bytes, lookup_key: bytes) -> None:
        for name, key in (("data_key", data_key), ("lookup_key", lookup_key)):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ValueError(f"{name} must be {KEY_BYTES} bytes")
        # One key for both jobs would let whoever holds the lookup key (e.g. a reporting replica) decrypt.
        if hmac.compare_digest(data_key, lookup_key):
            raise ValueError("data_key and lookup_key must be different keys")
        self._aead = AESGCM(data_key)
        self._lookup_key = lookup_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}({VERSION})"

    def encrypt(self, plaintext: str, context: str = "") -> str:
        """Encrypt with a fresh random nonce; `context` (e.g. the column name) must match on decrypt."""
        if not isinstance(plaintext, str):
            raise TypeError(f"plaintext must be str, not {type(plaintext).__name__}")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self._associated_data(context))
        return f"{VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii').rstrip('=')}"

    def decrypt(self, token: str, context: str = "") -> str:
        """The plaintext of a token from encrypt(); raises DecryptionError on anything else."""
        if not isinstance(token, str):
            raise DecryptionError("token must be a string")
        version, dot, body = token.partition(".")
        if not dot:
            raise DecryptionError("not an encrypted token (no version prefix)")
        if version != VERSION:
            raise DecryptionError(f"unsupported token version {version[:8]!r}")
        # The stdlib decoder silently skips foreign characters; a token is exact or it is not ours.
        if not _BASE64URL.fullmatch(body):
            raise DecryptionError("token body is not base64url")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except binascii.Error:
            raise DecryptionError("token body is not base64url") from None
        if len(raw) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError("token is truncated")
        try:
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._associated_data(context))
        except InvalidTag:
            raise DecryptionError("token failed authentication: tampered, wrong key or wrong context") from None
        return plain.decode("utf-8")

    def lookup_hash(self, kind: str, value: str) -> str:
        """HMAC-SHA256 hex of the normalised value, separated by kind so equal strings of two kinds differ."""
        try:
            normalise = _NORMALISERS[kind]
        except KeyError:
            raise ValueError(f"unknown lookup kind {kind!r}; expected one of {sorted(_NORMALISERS)}") from None
        message = kind.encode("ascii") + b"\x00" + normalise(value).encode()
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()

    @staticmethod
    def _associated_data(context: str) -> bytes:
        # The version is authenticated too, so a v1 body can never be replayed under a future scheme.
        return f"{VERSION}\x00{context}".encode()
