"""The simulator's second personality, "generic FHIR server": what an open-source FHIR R4 server in front of a
hospital looks like, as opposed to a Chinese HIS front-end processor.

- It wants credentials on every FHIR call: a bearer token from its own OAuth2 token endpoint
  (``POST /his-sim/{code}/oauth/token``, client credentials with client_secret_basic or client_secret_post, or a
  SMART Backend Services JWT assertion verified with the registered public key, PEM or JWKS, RS384/ES384, its jti
  refused when replayed), or HTTP Basic. Anything else is a 401.
- It assigns no business identifiers: a Patient gets no MRN or card code, a planned Encounter no certificate
  number, and an update stores the identifiers it is sent (HisStore with ``assigns_identifiers=False``).
- Past ``quota`` requests per ``window`` seconds it answers 429 with Retry-After (delta-seconds, or an HTTP-date
  with ``retry_after_date``).

Turn it on per institution with ``PUT /his-sim/{code}/_personality`` (or SimulatorState.make_generic); ``DELETE
/his-sim/{code}/_tokens`` expires every token it issued (a token running out mid-run).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUTH_MODES = ("client_credentials", "smart_backend", "basic")
ASSERTION_ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300
LEEWAY = 30


class TokenRefused(Exception):
    """The token endpoint's OAuth2 error answer (RFC 6749 §5.2)."""

    def __init__(self, error: str, description: str, status: int = 401) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass
class GenericPersonality:
    auth: str = "client_credentials"
    client_id: str = "referral-cloud"
    client_secret: str = ""
    public_key_pem: str = ""  # smart_backend: the client's registered key (PEM) ...
    jwks: dict | None = None  # ... or key set
    token_ttl: float = 300.0
    quota: int = 0  # requests per window; 0: no limit
    window: float = 1.0
    retry_after_date: bool = False
    tokens: dict[str, float] = field(default_factory=dict)  # token → expiry (monotonic)
    seen_jti: dict[str, float] = field(default_factory=dict)  # jti → until when it is remembered (wall clock)
    token_requests: int = 0
    refused: int = 0  # FHIR calls answered 401
    throttled: int = 0  # FHIR calls answered 429
    _window_start: float = 0.0
    _window_count: int = 0

    def public(self) -> dict[str, Any]:
        """What GET _personality shows: everything but the secret and the live tokens."""
        return {"kind": "generic", "auth": self.auth, "client_id": self.client_id, "token_ttl": self.token_ttl,
                "quota": self.quota, "window": self.window, "retry_after_date": self.retry_after_date,
                "token_requests": self.token_requests, "refused": self.refused, "throttled": self.throttled,
                "live_tokens": sum(1 for t in self.tokens.values() if t > time.monotonic())}

    # ------------------------------------------------------------------------------- throttling

    def throttle(self) -> dict[str, str] | None:
        """Count one request; past the quota, the Retry-After header of the 429."""
        if self.quota <= 0:
            return None
        now = time.monotonic()
        if now - self._window_start >= self.window:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        if self._window_count <= self.quota:
            return None
        self.throttled += 1
        wait = max(1, int(self._window_start + self.window - now + 0.999))
        if self.retry_after_date:
            return {"Retry-After": format_datetime(datetime.now(UTC) + timedelta(seconds=wait), usegmt=True)}
        return {"Retry-After": str(wait)}

    # ----------------------------------------------------------------------------- FHIR calls

    def authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if self.auth == "basic":
            return scheme.lower() == "basic" and self._basic_matches(value)
        expiry = self.tokens.get(value) if scheme.lower() == "bearer" else None
        return expiry is not None and expiry > time.monotonic()

    def _basic_matches(self, value: str) -> bool:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (hmac.compare_digest(user, self.client_id)
                and hmac.compare_digest(password.encode(), self.client_secret.encode()))

    def expire_tokens(self) -> int:
        count = len(self.tokens)
        self.tokens.clear()
        return count

    # ---------------------------------------------------------------------------- token endpoint

    def issue_token(self, form: dict[str, str], authorization: str, token_url: str) -> dict[str, Any]:
        """The token endpoint: check the grant and the client, answer a fresh bearer token."""
        self.token_requests += 1
        if self.auth == "basic":
            raise TokenRefused("unauthorized_client", "该服务器只接受 HTTP Basic 认证", 400)
        if form.get("grant_type") != "client_credentials":
            raise TokenRefused("unsupported_grant_type", "只支持 client_credentials", 400)
        if self.auth == "smart_backend":
            self._check_assertion(form, token_url)
        else:
            self._check_secret(form, authorization)
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.monotonic() + self.token_ttl
        answer: dict[str, Any] = {"access_token": token, "token_type": "bearer", "expires_in": int(self.token_ttl)}
        if form.get("scope"):
            answer["scope"] = form["scope"]
        return answer

    def _check_secret(self, form: dict[str, str], authorization: str) -> None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "basic":
            ok = self._basic_matches(value)
        else:
            ok = (hmac.compare_digest(form.get("client_id", ""), self.client_id)
                  and hmac.compare_digest(form.get("client_secret", "").encode(), self.client_secret.encode()))
        if not ok:
            raise TokenRefused("invalid_client", "客户端标识或密钥错误")

    def _key_for(self, header: dict[str, Any]) -> Any:
        if self.jwks:
            kid = header.get("kid")
            for entry in self.jwks.get("keys", []):
                if kid is None or entry.get("kid") == kid:
                    return jwt.PyJWK(entry).key
            raise TokenRefused("invalid_client", "未登记该 kid 的公钥")
        try:
            return load_pem_public_key(self.public_key_pem.encode())
        except (ValueError, TypeError):
            raise TokenRefused("invalid_client", "未登记客户端公钥") from None

    def _check_assertion(self, form: dict[str, str], token_url: str) -> None:
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise TokenRefused("invalid_client", "需要 JWT 客户端断言（SMART Backend Services）")
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise TokenRefused("invalid_client", "客户端断言格式错误") from None
        algorithm = header.get("alg")
        if algorithm not in ASSERTION_ALGORITHMS:
            raise TokenRefused("invalid_client", "客户端断言只接受 RS384 或 ES384 签名")
        try:
            claims = jwt.decode(assertion, self._key_for(header), algorithms=[algorithm], audience=token_url,
                                issuer=self.client_id, leeway=LEEWAY,
                                options={"require": ["iss", "sub", "aud", "exp", "jti"]})
        except jwt.ExpiredSignatureError:
            raise TokenRefused("invalid_client", "客户端断言已过期") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("invalid_client", "客户端断言的 aud 不是本令牌端点") from None
        except jwt.PyJWTError:
            raise TokenRefused("invalid_client", "客户端断言签名无效或缺少必要字段") from None
        now = time.time()
        if claims["sub"] != self.client_id:
            raise TokenRefused("invalid_client", "客户端断言的 sub 应与 iss 相同")
        if claims["exp"] - now > MAX_ASSERTION_LIFETIME + LEEWAY:
            raise TokenRefused("invalid_client", "客户端断言有效期超过 5 分钟")
        jti = str(claims["jti"])
        self.seen_jti = {k: until for k, until in self.seen_jti.items() if until > now}
        if jti in self.seen_jti:
            raise TokenRefused("invalid_client", "客户端断言的 jti 已使用过（重放）")
        self.seen_jti[jti] = claims["exp"] + LEEWAY


def parse_personality(data: Any) -> tuple[GenericPersonality | None, str]:
    """The body of PUT _personality: {kind: "generic", auth, client_id, client_secret | public_key_pem | jwks,
    token_ttl, quota, window, retry_after_date}."""
    if not isinstance(data, dict) or data.get("kind") != "generic":
        return None, "kind 应为 generic"
    auth = data.get("auth", "client_credentials")
    if auth not in AUTH_MODES:
        return None, f"auth 应为 {' / '.join(AUTH_MODES)}"
    text = {k: data.get(k, "") for k in ("client_id", "client_secret", "public_key_pem")}
    if not all(isinstance(v, str) for v in text.values()):
        return None, "client_id、client_secret、public_key_pem 应为文本"
    jwks = data.get("jwks")
    if jwks is not None and not (isinstance(jwks, dict) and isinstance(jwks.get("keys"), list)):
        return None, "jwks 应为 {\"keys\": [...]}"
    if auth == "smart_backend" and not (text["public_key_pem"] or jwks):
        return None, "smart_backend 需要 public_key_pem 或 jwks"
    if auth != "smart_backend" and not text["client_secret"]:
        return None, "需要 client_secret"
    numbers = {}
    for name, default, low, high in (("token_ttl", 300, 1, 86400), ("quota", 0, 0, 100000), ("window", 1, 0.1, 3600)):
        value = data.get(name, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
            return None, f"{name} 应为 {low}–{high}"
        numbers[name] = value
    return GenericPersonality(auth=auth, client_id=text["client_id"] or "referral-cloud",
                              client_secret=text["client_secret"], public_key_pem=text["public_key_pem"],
                              jwks=json.loads(json.dumps(jwks)) if jwks else None,
                              token_ttl=float(numbers["token_ttl"]), quota=int(numbers["quota"]),
                              window=float(numbers["window"]),
                              retry_after_date=bool(data.get("retry_after_date", False))), ""
