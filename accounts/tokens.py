"""Access tokens (short-lived JWT) and opaque refresh tokens (only their hash is stored)."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from errors import Unauthenticated

ALGORITHM = "HS256"
ISSUER = "referral-cloud"
LEEWAY = 5  # seconds of clock skew accepted on exp/nbf


@dataclass(frozen=True)
class AccessClaims:
    account: uuid.UUID
    session: uuid.UUID  # the refresh family the token was issued in (accounts.revocation)
    jti: str
    expires_at: float


def issue_access_token(secret: str, account_public_id: uuid.UUID, ttl: int, *, kind: str,
                       session: uuid.UUID) -> tuple[str, str]:
    """Return (token, jti). Claims name the account and the session only; roles are read fresh on every
    request, and the session is checked against revocation on every request."""
    now = int(time.time())
    jti = uuid.uuid4().hex
    claims = {"iss": ISSUER, "sub": str(account_public_id), "sid": str(session), "typ": "access", "kind": kind,
              "iat": now, "nbf": now, "exp": now + ttl, "jti": jti}
    return jwt.encode(claims, secret, algorithm=ALGORITHM), jti


def verify_access_token(secret: str, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "jti", "sid"]}, leeway=LEEWAY)
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("登录已过期，请重新登录", code="TOKEN_EXPIRED") from None
    except jwt.PyJWTError:
        raise Unauthenticated("登录凭证无效，请重新登录", code="TOKEN_INVALID") from None
    if claims.get("typ") != "access":
        raise Unauthenticated("登录凭证无效，请重新登录", code="TOKEN_INVALID")
    try:
        account, session = uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"])
    except (ValueError, TypeError, AttributeError):
        raise Unauthenticated("登录凭证无效，请重新登录", code="TOKEN_INVALID") from None
    return AccessClaims(account=account, session=session, jti=str(claims["jti"]), expires_at=float(claims["exp"]))


def new_secret_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
