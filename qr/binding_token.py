"""The QR of a pending patient-binding request: a signed reference to the request and nothing else.

A compact JWT (HS256) with header ``{"typ": "rc-binding-request"}`` and claims ``{"sub": <request public id>,
"iat", "exp"}``: no name, no ID number, so a photo of the screen names nobody. The key is derived from
JWT_SECRET under its own label, so a binding QR never passes as an access token or a patient card, nor the
reverse. Whether the request is still pending (a replayed QR) is the database's answer, not the token's."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import jwt

TOKEN_TYPE = "rc-binding-request"
LEEWAY = 30
_LABEL = b"referral-cloud/binding-request/v1"


class BindingTokenError(ValueError):
    """Not a usable binding QR; ``code`` says why (BINDING_TOKEN_INVALID or BINDING_REQUEST_EXPIRED)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()


def issue_binding_token(secret: str, request_public_id: uuid.UUID, expires_at: float,
                        *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims = {"sub": str(request_public_id), "iat": issued, "exp": int(expires_at)}
    return jwt.encode(claims, _key(secret), algorithm="HS256", headers={"typ": TOKEN_TYPE})


def verify_binding_token(secret: str, token: str) -> uuid.UUID:
    """The public id of the binding request the QR names; raises BindingTokenError."""
    invalid = BindingTokenError("无法识别的绑定二维码，请让对方在小程序中重新打开", "BINDING_TOKEN_INVALID")
    try:
        if jwt.get_unverified_header(token).get("typ") != TOKEN_TYPE:
            raise invalid
        claims = jwt.decode(token, _key(secret), algorithms=["HS256"], leeway=LEEWAY,
                            options={"require": ["sub", "iat", "exp"]})
        return uuid.UUID(str(claims["sub"]))
    except jwt.ExpiredSignatureError:
        raise BindingTokenError("该绑定二维码已过期，请重新提交绑定申请", "BINDING_REQUEST_EXPIRED") from None
    except (jwt.PyJWTError, ValueError):
        raise invalid from None
