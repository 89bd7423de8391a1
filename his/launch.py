"""Single sign-on from a member's HIS: redeem a launch JWT the institution's HIS signed (see his.profile for the
claims) for the staff member it names.

Checks, each failure a 401 with its own code:
- the token parses and names an issuer (LAUNCH_MALFORMED), the issuer is a consortium member
  (LAUNCH_UNKNOWN_INSTITUTION) that registered a public key (LAUNCH_KEY_NOT_REGISTERED / LAUNCH_KEY_INVALID);
- the signature verifies with that key, in the one algorithm its type allows: Ed25519 → EdDSA, RSA → RS256,
  EC P-256 → ES256; HMAC is never accepted (LAUNCH_BAD_SIGNATURE);
- ``aud`` is ours (LAUNCH_WRONG_AUDIENCE), it is not expired (LAUNCH_EXPIRED) nor issued in the future
  (LAUNCH_NOT_YET_VALID), and it lives at most LAUNCH_MAX_LIFETIME seconds (LAUNCH_LIFETIME_TOO_LONG);
- its ``jti`` was never seen (LAUNCH_REPLAYED): claimed with SET NX in the shared KV store until expiry;
- ``sub`` is the HIS user id of an active staff member of that institution (LAUNCH_UNKNOWN_USER).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from tortoise.exceptions import IntegrityError

from errors import Unauthenticated
from his import profile
from kv import KV
from models import Institution, Staff, WeChatAccount

log = logging.getLogger("referral_cloud.his.launch")

LEEWAY = 30
MAX_TOKEN = 4096


@dataclass(frozen=True)
class Launch:
    account: WeChatAccount
    staff: Staff
    institution: Institution
    patient: str | None  # the patient in context at the HIS (an MRN or card code), if any


def _refuse(code: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, code=code)


def _algorithm(key: object) -> str | None:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    return None


async def redeem_launch_token(kv: KV, token: str) -> Launch:
    """Verify a launch token, spend its jti, and resolve its staff member (and their login account)."""
    token = token.strip()
    if not token or len(token) > MAX_TOKEN:
        raise _refuse("LAUNCH_MALFORMED", "HIS 登录凭证格式不正确")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise _refuse("LAUNCH_MALFORMED", "HIS 登录凭证格式不正确") from None
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise _refuse("LAUNCH_MALFORMED", "HIS 登录凭证缺少签发机构（iss）")
    institution = await Institution.get_or_none(code=issuer, deleted_at=None)
    if institution is None:
        raise _refuse("LAUNCH_UNKNOWN_INSTITUTION", "签发该登录凭证的机构不是本医联体成员")
    if not institution.launch_public_key.strip():
        raise _refuse("LAUNCH_KEY_NOT_REGISTERED", "该机构尚未登记 HIS 单点登录公钥，请联系机构管理员")
    try:
        public_key = load_pem_public_key(institution.launch_public_key.encode())
    except (ValueError, TypeError):
        log.warning("institution %s has an unreadable launch public key", institution.code)
        raise _refuse("LAUNCH_KEY_INVALID", "该机构登记的 HIS 单点登录公钥无效，请联系机构管理员") from None
    algorithm = _algorithm(public_key)
    if algorithm is None:
        log.warning("institution %s has a launch key of an unsupported type", institution.code)
        raise _refuse("LAUNCH_KEY_INVALID", "该机构登记的 HIS 单点登录公钥类型不受支持，请联系机构管理员")
    try:
        claims = jwt.decode(token, public_key, algorithms=[algorithm], audience=profile.LAUNCH_AUDIENCE,
                            issuer=issuer, leeway=LEEWAY,
                            options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"]})
    except jwt.ExpiredSignatureError:
        raise _refuse("LAUNCH_EXPIRED", "HIS 登录凭证已过期，请在 HIS 中重新打开") from None
    except jwt.ImmatureSignatureError:
        raise _refuse("LAUNCH_NOT_YET_VALID", "HIS 登录凭证的签发时间晚于当前时间，请检查 HIS 服务器时钟") from None
    except jwt.InvalidAudienceError:
        raise _refuse("LAUNCH_WRONG_AUDIENCE", "该登录凭证不是签发给本平台的") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _refuse("LAUNCH_MALFORMED", f"HIS 登录凭证缺少必要字段（{exc.claim}）") from None
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
        raise _refuse("LAUNCH_BAD_SIGNATURE", "HIS 登录凭证签名无效（与该机构登记的公钥不符）") from None
    except jwt.PyJWTError:
        raise _refuse("LAUNCH_MALFORMED", "HIS 登录凭证格式不正确") from None
    issued_at, expires_at = claims["iat"], claims["exp"]
    if not isinstance(issued_at, (int, float)) or expires_at - issued_at > profile.LAUNCH_MAX_LIFETIME:
        raise _refuse("LAUNCH_LIFETIME_TOO_LONG",
                      f"HIS 登录凭证有效期过长（不得超过 {profile.LAUNCH_MAX_LIFETIME} 秒）")
    subject, jti, patient = claims["sub"], claims["jti"], claims.get("patient")
    if not isinstance(subject, str) or not isinstance(jti, str) or not jti or len(jti) > 128:
        raise _refuse("LAUNCH_MALFORMED", "HIS 登录凭证格式不正确")
    if patient is not None and (not isinstance(patient, str) or len(patient) > 64):
        raise _refuse("LAUNCH_MALFORMED", "HIS 登录凭证中的患者编号格式不正确")
    # One use per jti, across every web process: remembered until the token could no longer pass anyway.
    remember = max(1.0, expires_at + LEEWAY - time.time())
    jti_key = "his-launch:jti:" + hashlib.sha256(f"{issuer}\0{jti}".encode()).hexdigest()
    if not await kv.set(jti_key, "1", ex=remember, nx=True):
        raise _refuse("LAUNCH_REPLAYED", "该 HIS 登录凭证已被使用过，请在 HIS 中重新打开")
    staff = await Staff.get_or_none(institution_id=institution.id, his_user_id=subject, deleted_at=None,
                                    is_active=True)
    if staff is None:
        raise _refuse("LAUNCH_UNKNOWN_USER",
                      "本平台未找到与该 HIS 用户对应的在职工作人员，请联系机构管理员登记 HIS 工号")
    account = await _account_of(staff)
    log.info("his launch for staff %s of %s", staff.public_id, institution.code)
    return Launch(account=account, staff=staff, institution=institution, patient=patient or None)


async def _account_of(staff: Staff) -> WeChatAccount:
    """The staff member's login account; one is made for staff who only ever come from their HIS
    (its openid is ``his:<staff public id>``, never a real WeChat openid, so nothing is sent to it)."""
    account = await WeChatAccount.get_or_none(staff_id=staff.id)
    if account is not None:
        return account
    try:
        return await WeChatAccount.create(openid=f"his:{staff.public_id}", staff=staff)
    except IntegrityError:
        # A concurrent launch of the same staff member made it first.
        return await WeChatAccount.get(staff_id=staff.id)
