"""The patient's own QR card: a short-lived signed token that names nothing but the patient's public id.

The token is a compact JWT (HS256) with header ``{"typ": "rc-patient-card", "kid": ...}`` and claims
``{"sub": <patient public id>, "iat", "exp"}``: no name, no ID number, nothing a photo of the screen
would leak. It is verified only by this platform, so an HMAC is enough; the key is derived from
JWT_SECRET with its own label (a card can never pass as an access token or the reverse), and ``kid``
names the derived key so a rotated secret is reported as "issued by another key" rather than forged.
Cards are dynamic (like a 电子健康卡 dynamic code): the mini-program fetches a fresh one each time it shows
the card, so the lifetime is minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

import jwt

TOKEN_TYPE = "rc-patient-card"
CARD_TTL = 10 * 60
LEEWAY = 30
_LABEL = b"referral-cloud/patient-card/v1"


class CardTokenError(ValueError):
    """A token that is not a valid patient card; ``code`` says why, the message is for the doctor."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class PatientCard:
    token: str
    patient_public_id: uuid.UUID
    issued_at: int
    expires_at: int


def _key(secret: str) -> tuple[bytes, str]:
    key = hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()
    return key, "pc1-" + hashlib.sha256(key).hexdigest()[:12]


def looks_like_card_token(content: str) -> bool:
    """Whether a scanned text has the shape of a JWT with our card type (cheap, unverified)."""
    parts = content.split(".")
    if len(parts) != 3 or not all(parts):
        return False
    try:
        header = jwt.get_unverified_header(content)
    except jwt.PyJWTError:
        return False
    return header.get("typ") == TOKEN_TYPE


def issue_card(secret: str, patient_public_id: uuid.UUID, *, ttl: int = CARD_TTL,
               now: float | None = None) -> PatientCard:
    key, kid = _key(secret)
    issued = int(now if now is not None else time.time())
    claims = {"sub": str(patient_public_id), "iat": issued, "exp": issued + ttl}
    token = jwt.encode(claims, key, algorithm="HS256", headers={"typ": TOKEN_TYPE, "kid": kid})
    return PatientCard(token=token, patient_public_id=patient_public_id, issued_at=issued, expires_at=issued + ttl)


def verify_card(secret: str, token: str) -> uuid.UUID:
    """The patient public id a card names; raises CardTokenError (expired, other key, forged, malformed)."""
    key, kid = _key(secret)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise CardTokenError("无法识别的患者二维码", "PATIENT_CARD_INVALID") from None
    if header.get("typ") != TOKEN_TYPE:
        raise CardTokenError("无法识别的患者二维码", "PATIENT_CARD_INVALID")
    if header.get("kid") != kid:
        raise CardTokenError("该患者二维码已失效，请患者在小程序中刷新后重新出示", "PATIENT_CARD_KEY_UNKNOWN")
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], leeway=LEEWAY,
                            options={"require": ["sub", "iat", "exp"]})
    except jwt.ExpiredSignatureError:
        raise CardTokenError("患者二维码已过期，请患者在小程序中刷新后重新出示", "PATIENT_CARD_EXPIRED") from None
    except jwt.PyJWTError:
        raise CardTokenError("患者二维码无效（签名校验失败）", "PATIENT_CARD_INVALID") from None
    try:
        return uuid.UUID(str(claims["sub"]))
    except ValueError:
        raise CardTokenError("无法识别的患者二维码", "PATIENT_CARD_INVALID") from None

