"""Admission-slip tokens: compact JWTs signed with Ed25519 (EdDSA), verifiable by anyone holding the JWKS.

A token is ``header.claims.signature`` with header ``{"alg": "EdDSA", "kid": <key id>, "typ": "rc-slip"}`` and
claims ``{"sub": <slip code>, "aud": <target institution code>, "exp": <expiry, unix seconds>}``: no name, no ID
number, nothing a stranger reading the QR learns about the patient. Ed25519 signatures are deterministic, so a
slip's token (and so its QR image) is the same every time it is made with the same key.

This module is pure (no database, no HTTP): the server verifies with the keys it stores, and a desk device
verifies offline with ``verify_offline`` and nothing but the published JWKS document and PyJWT. Both run the
same checks in the same order (shape, key, signature, institution, expiry) and so reach the same verdict; what
only the server knows (revoked, already used) comes after.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

TOKEN_TYPE = "rc-slip"
ALGORITHM = "EdDSA"
MAX_TOKEN_LENGTH = 1024  # ours are about 220 characters; anything far longer is not a slip

# Verdict codes, shared by the server's error responses and offline verifiers.
MALFORMED = "SLIP_MALFORMED"
UNKNOWN_KEY = "SLIP_UNKNOWN_KEY"
BAD_SIGNATURE = "SLIP_BAD_SIGNATURE"
OTHER_INSTITUTION = "SLIP_OTHER_INSTITUTION"
EXPIRED = "SLIP_EXPIRED"
VALID = "VALID"

MESSAGES = {
    MALFORMED: "无法识别的二维码，这不是本平台的入院凭条",
    UNKNOWN_KEY: "入院凭条不是本平台签发的（签名密钥未知），可能是伪造的凭条，请核实患者身份",
    BAD_SIGNATURE: "入院凭条签名校验失败，内容可能被篡改，请核实患者身份",
    OTHER_INSTITUTION: "该入院凭条不是本院的，请患者前往凭条上的医院办理入院",
    EXPIRED: "该入院凭条已过期，请患者联系转诊医生重新预约",
}


class SlipTokenError(ValueError):
    """A token that does not pass: ``code`` is one of the verdict codes above, ``message`` is for the clerk."""

    def __init__(self, code: str, *, message: str | None = None, claims: SlipClaims | None = None) -> None:
        self.code = code
        self.message = message or MESSAGES[code]
        self.claims = claims  # set once the signature checked out (other institution, expired)
        super().__init__(f"{code}: {self.message}")


@dataclass(frozen=True)
class SlipClaims:
    code: str
    institution: str
    expires_at: int
    kid: str


def sign(private_key: Ed25519PrivateKey, kid: str, *, code: str, institution: str, expires_at: int) -> str:
    """The slip's token (deterministic for a given key and claims)."""
    claims = {"sub": code, "aud": institution, "exp": int(expires_at)}
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"kid": kid, "typ": TOKEN_TYPE})


def token_kid(token: object) -> str:
    """The key id named in a token's header; raises SlipTokenError(MALFORMED) for anything not shaped like ours."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise SlipTokenError(MALFORMED)
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise SlipTokenError(MALFORMED)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise SlipTokenError(MALFORMED) from None
    kid = header.get("kid")
    if header.get("typ") != TOKEN_TYPE or header.get("alg") != ALGORITHM or not isinstance(kid, str) or not kid:
        raise SlipTokenError(MALFORMED)
    return kid


def verify(token: object, public_key: Ed25519PublicKey | None, institution: str, *,
           now: float | None = None) -> SlipClaims:
    """Check shape, key, signature, institution and expiry, in that order; raises SlipTokenError.

    ``public_key`` is the key the caller holds for the token's kid (``token_kid``), or None when it has none."""
    kid = token_kid(token)
    if public_key is None:
        raise SlipTokenError(UNKNOWN_KEY)
    try:
        # Expiry and audience are checked below, after the signature, so that their order is ours, not PyJWT's.
        claims = jwt.decode(token, public_key, algorithms=[ALGORITHM],  # type: ignore[arg-type]
                            options={"verify_exp": False, "verify_aud": False, "require": ["sub", "aud", "exp"]})
    except (jwt.InvalidSignatureError, jwt.DecodeError):
        # The header is ours and the key known: a body that fails to verify or even to decode was altered.
        raise SlipTokenError(BAD_SIGNATURE) from None
    except jwt.PyJWTError:
        raise SlipTokenError(MALFORMED) from None
    code, audience, expiry = claims.get("sub"), claims.get("aud"), claims.get("exp")
    if not isinstance(code, str) or not isinstance(audience, str) or not isinstance(expiry, int):
        raise SlipTokenError(MALFORMED)
    result = SlipClaims(code=code, institution=audience, expires_at=expiry, kid=kid)
    if audience != institution:
        raise SlipTokenError(OTHER_INSTITUTION, claims=result)
    if expiry <= (time.time() if now is None else now):
        raise SlipTokenError(EXPIRED, claims=result)
    return result


# -- JWKS --------------------------------------------------------------------------------------------------------


def public_jwk(public_key: Ed25519PublicKey, kid: str) -> dict:
    """The key as a JWK (RFC 8037): OKP / Ed25519 with its kid, for EdDSA signatures."""
    jwk = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    return {"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "kid": kid, "alg": ALGORITHM, "use": "sig"}


def keys_from_jwks(document: Mapping) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 signing keys of a JWKS document by kid (other key types are skipped)."""
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in document.get("keys", []):
        if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519" or not entry.get("kid"):
            continue
        key = jwt.PyJWK.from_dict(dict(entry), algorithm=ALGORITHM).key
        if isinstance(key, Ed25519PublicKey):
            keys[entry["kid"]] = key
    return keys


def verify_offline(token: object, jwks: Mapping, institution: str, *, now: float | None = None) -> SlipClaims:
    """What a desk device runs when the network is down: the published JWKS document is all it needs.

    It cannot know whether a slip was revoked or already used since the JWKS was fetched; the server can."""
    kid = token_kid(token)
    return verify(token, keys_from_jwks(jwks).get(kid), institution, now=now)
