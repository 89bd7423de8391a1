"""Demo single-sign-on keys of the simulated HISes: each institution code has an Ed25519 key pair derived
from the code alone, so the demo seed can register the public key without a running simulator and the
simulator can mint launch tokens for the demo (POST /his-sim/{code}/_launch-token).

These keys are public knowledge by construction: anyone can derive them. They exist for the demo
consortium only; a real institution registers the public key of a key pair its HIS keeps secret."""

from __future__ import annotations

import hashlib
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from his import profile

DEFAULT_TTL = 120


def demo_launch_key(code: str) -> Ed25519PrivateKey:
    seed = hashlib.sha256(b"referral-cloud/his-sim/launch-key/v1:" + code.encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def demo_launch_public_key_pem(code: str) -> str:
    """The PEM (SubjectPublicKeyInfo) to store in Institution.launch_public_key for a demo institution."""
    return demo_launch_key(code).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def mint_launch_token(code: str, user_id: str, *, patient: str | None = None, ttl: int = DEFAULT_TTL,
                      now: float | None = None, key: Ed25519PrivateKey | None = None,
                      extra: dict | None = None) -> str:
    """A launch JWT as the institution's HIS would sign it (EdDSA)."""
    issued = int(now if now is not None else time.time())
    claims: dict = {"iss": code, "sub": user_id, "aud": profile.LAUNCH_AUDIENCE, "iat": issued,
                    "exp": issued + ttl, "jti": uuid.uuid4().hex}
    if patient:
        claims["patient"] = patient
    claims.update(extra or {})
    return jwt.encode(claims, key or demo_launch_key(code), algorithm="EdDSA", headers={"kid": f"{code}-his-demo"})
