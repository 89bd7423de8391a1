"""Credentials the HIS gateway presents to a FHIR server or front-end processor (the institution's ``his_auth``):

- ``none``: nothing (mutual TLS alone, or an open front-end processor on the hospital's private network);
- ``bearer``: a static token, ``Authorization: Bearer <secret>``;
- ``basic``: HTTP Basic with ``client_id`` as the user name and the secret as the password;
- ``client_credentials``: OAuth2 client credentials at ``token_url`` (client_secret_basic, optional ``scope``);
- ``smart_backend``: SMART Backend Services: the same grant, the client authenticated by a JWT assertion
  (iss = sub = client_id, aud = token_url, a fresh jti, exp 5 minutes ahead) signed RS384 or ES384 with the
  institution's private key (the secret, PEM), ``kid`` = ``key_id`` when set.

Tokens of the last two are cached in the shared KV store (wechat.token.SharedToken, as the WeChat token is):
one process fetches under a lock, all use it until shortly before expiry. A 401 from the server renews the
token once (FhirGateway). Secrets and tokens are never logged; logs carry a token's fingerprint at most.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from his.gateway import HisAuthFailed, HisBusy, HisEndpoint, HisNotConfigured, HisTimeout, HisUnreachable
from kv import KV
from wechat.token import CachedToken, SharedToken

log = logging.getLogger("referral_cloud.his.auth")

TOKEN_MODES = ("client_credentials", "smart_backend")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # SMART Backend Services: exp at most five minutes after iat
DEFAULT_EXPIRES_IN = 300.0  # a token answer without expires_in is trusted this long
MAX_TOKEN_ANSWER = 64 * 1024
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,40}$")


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks us to wait: delta-seconds or an HTTP-date (RFC 9110 §10.2.3);
    None when absent or unreadable. A date in the past means now (0)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(min(int(text), 7 * 86400))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def basic_authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def assertion_algorithm(key: object) -> str | None:
    """The one algorithm SMART Backend Services allows for a key: RS384 (RSA ≥ 2048) or ES384 (P-384)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey) and key.key_size >= 2048:
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(key.curve,
                                                                                               ec.SECP384R1):
        return "ES384"
    return None


def client_assertion(endpoint: HisEndpoint, *, now: float | None = None) -> str:
    """The signed JWT that authenticates a SMART backend client at its token endpoint."""
    try:
        key = load_pem_private_key(endpoint.secret.encode(), password=None)
    except (ValueError, TypeError):
        raise HisNotConfigured("该机构的 SMART 私钥无效（应为未加密的 PEM 私钥），请联系机构管理员",
                               institution=endpoint.code) from None
    algorithm = assertion_algorithm(key)
    if algorithm is None:
        raise HisNotConfigured("该机构的 SMART 私钥类型不受支持（应为 RSA 2048 位以上或 EC P-384）",
                               institution=endpoint.code)
    issued = int(now if now is not None else time.time())
    claims = {"iss": endpoint.client_id, "sub": endpoint.client_id, "aud": endpoint.token_url,
              "jti": uuid.uuid4().hex, "iat": issued, "exp": issued + ASSERTION_LIFETIME}
    headers = {"typ": "JWT"} | ({"kid": endpoint.key_id} if endpoint.key_id else {})
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]


def _cache_key(endpoint: HisEndpoint) -> str:
    """One cache entry per institution and credential set: a changed secret, client or scope never reuses
    the token of the old one."""
    digest = hashlib.sha256("\0".join((endpoint.token_url, endpoint.client_id, endpoint.scope, endpoint.auth,
                                       endpoint.secret)).encode()).hexdigest()[:16]
    return f"his:token:{endpoint.code}:{digest}"


class HisCredentials:
    """Builds the Authorization header of an institution's HIS calls; keeps OAuth2 tokens in the shared store."""

    def __init__(self, kv: KV, *, lock_timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.lock_timeout = lock_timeout
        self.clock = clock

    def _shared(self, endpoint: HisEndpoint, session: aiohttp.ClientSession, timeout: float) -> SharedToken:
        async def fetch(force: bool) -> tuple[str, float]:
            return await self.fetch_token(endpoint, session, timeout)

        key = _cache_key(endpoint)
        return SharedToken(self.kv, fetch, lock_timeout=self.lock_timeout, clock=self.clock, key=key,
                           lock_name=key, label=f"HIS token of {endpoint.code}",
                           busy=lambda: HisUnreachable("另一进程正在获取 HIS 访问令牌，等待超时",
                                                       institution=endpoint.code))

    async def authorization(self, endpoint: HisEndpoint, session: aiohttp.ClientSession,
                            timeout: float) -> str | None:
        """The Authorization header value for the next call, or None for ``none``."""
        mode = endpoint.auth
        if mode == "none":
            return None
        if not endpoint.secret:
            raise HisNotConfigured("该机构的 HIS 访问凭证未配置完整，请联系机构管理员", institution=endpoint.code)
        if mode == "bearer":
            return f"Bearer {endpoint.secret}"
        if mode == "basic":
            return basic_authorization(endpoint.client_id, endpoint.secret)
        if mode in TOKEN_MODES:
            cached = await self._shared(endpoint, session, timeout).get()
            return f"Bearer {cached.token}"
        raise HisNotConfigured("该机构的 HIS 认证方式不受支持，请联系机构管理员", institution=endpoint.code)

    async def renew(self, endpoint: HisEndpoint, session: aiohttp.ClientSession, timeout: float,
                    rejected: str) -> CachedToken:
        """A new token after the server refused `rejected` (the Authorization value it was sent)."""
        token = rejected.removeprefix("Bearer ")
        return await self._shared(endpoint, session, timeout).refresh(rejected=token)

    async def fetch_token(self, endpoint: HisEndpoint, session: aiohttp.ClientSession,
                          timeout: float) -> tuple[str, float]:
        """(access token, expires in seconds) from the token endpoint."""
        if not endpoint.token_url or not endpoint.client_id:
            raise HisNotConfigured("该机构的 HIS 令牌端点或客户端标识未配置，请联系机构管理员",
                                   institution=endpoint.code)
        form = {"grant_type": "client_credentials"} | ({"scope": endpoint.scope} if endpoint.scope else {})
        headers = {"Accept": "application/json"}
        if endpoint.auth == "smart_backend":
            form |= {"client_assertion_type": ASSERTION_TYPE, "client_assertion": client_assertion(endpoint)}
        else:
            headers["Authorization"] = basic_authorization(endpoint.client_id, endpoint.secret)
        try:
            async with session.post(endpoint.token_url, data=form, headers=headers, allow_redirects=False,
                                    timeout=aiohttp.ClientTimeout(total=max(timeout, 0.1))) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                raw = await response.content.read(MAX_TOKEN_ANSWER)
        except TimeoutError:
            raise HisTimeout("获取 HIS 访问令牌超时", institution=endpoint.code) from None
        except aiohttp.ClientError as exc:
            log.warning("his %s token endpoint unreachable: %s", endpoint.code, type(exc).__name__)
            raise HisUnreachable("无法连接 HIS 令牌端点", institution=endpoint.code) from None
        log.info("his %s token endpoint -> %d", endpoint.code, status)
        data = _json_object(raw)
        if status == 429 or status >= 500:
            raise HisBusy(institution=endpoint.code, http_status=status,
                          retry_after=retry_after_seconds(retry_after))
        if status != 200:
            error = data.get("error")
            reason = f"（{error}）" if isinstance(error, str) and _OAUTH_ERROR.match(error) else f"（HTTP {status}）"
            raise HisAuthFailed(f"HIS 令牌端点拒绝了本平台的凭证{reason}，请联系机构管理员检查 HIS 连接配置",
                                institution=endpoint.code, detail={"http_status": status})
        token = data.get("access_token")
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise HisAuthFailed("HIS 令牌端点未返回访问令牌", institution=endpoint.code)
        expires_in = data.get("expires_in", DEFAULT_EXPIRES_IN)
        if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
            expires_in = DEFAULT_EXPIRES_IN
        return token, float(expires_in)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
