"""Async WeChat server API client on aiohttp: login, verified phone numbers, subscribe and customer-service
messages, wxacode.

Every call has a timeout; errors come back as WeChatError (WeChatUnavailable/WeChatTimeout when WeChat
could not be reached). URLs carry the secret or the access token, so nothing here logs a URL, a token or a
session_key."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from kv import KV
from wechat.errors import TOKEN_ERRCODES, WeChatError, WeChatTimeout, WeChatUnavailable
from wechat.token import SharedToken, fingerprint

log = logging.getLogger("referral_cloud.wechat")

MiniprogramState = Literal["developer", "trial", "formal"]
# msg_sec_check v2 scenes: 1 profile, 2 comment, 3 forum, 4 social log (what chat text is).
SCENE_SOCIAL = 4


@dataclass(frozen=True)
class SecCheck:
    """msg_sec_check's overall verdict: `suggest` is pass, review or risky; `label` 100 is normal."""

    suggest: str
    label: int
    trace_id: str = ""


@dataclass(frozen=True)
class Session:
    """The result of code2session; session_key stays on the server and out of logs and reprs."""

    openid: str
    unionid: str | None
    session_key: str = field(repr=False)


@dataclass(frozen=True)
class PhoneNumber:
    """phonenumber.getPhoneNumber: the number WeChat has verified for the user (personal data: never logged)."""

    phone: str = field(repr=False)  # purePhoneNumber: without the country code
    country_code: str


class WeChatClient:
    def __init__(self, session: aiohttp.ClientSession, kv: KV, *, appid: str, secret: str, base_url: str,
                 timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.appid = appid
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # Fetching can take two requests (normal, then forced); the lock must outlive both.
        self._token = SharedToken(kv, self._fetch_token, lock_timeout=2 * timeout + 5, clock=clock)
        self._clock = clock
        self.token_fetches = 0  # stable_token requests sent by this process, for /readyz and tests

    def __repr__(self) -> str:
        return f"WeChatClient(appid={self.appid!r}, base_url={self.base_url!r})"

    # -- access token -------------------------------------------------------------------------------------

    async def access_token(self) -> str:
        """The shared access token, fetched (by one process) when missing or due."""
        return (await self._token.get()).token

    async def ensure_token(self) -> float:
        """Make sure the shared token is fresh; returns the seconds until it is next due for refresh."""
        cached = await self._token.get()
        return max(cached.refresh_at - self._clock(), 0.0)

    async def status(self) -> dict[str, Any]:
        """Token state for /readyz: a fingerprint instead of the token, and this process's fetch count.

        Never raises: readiness reports a KV failure rather than failing itself."""
        report: dict[str, Any] = {"api_base": self.base_url, "token_fetches": self.token_fetches,
                                  "token_fingerprint": None, "token_expires_in": None}
        try:
            cached = await self._token.load()
        except Exception as exc:  # the KV store is unreachable; /readyz's own KV check says so too
            report["error"] = type(exc).__name__
            return report
        if cached is not None:
            report["token_fingerprint"] = fingerprint(cached.token)
            report["token_expires_in"] = int(cached.expires_at - self._clock())
        return report

    async def _fetch_token(self, force_refresh: bool) -> tuple[str, float]:
        self.token_fetches += 1
        body = {"grant_type": "client_credential", "appid": self.appid, "secret": self._secret,
                "force_refresh": force_refresh}
        data = await self._request("POST", "/cgi-bin/stable_token", json_body=body)
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, (int, float)):
            raise WeChatUnavailable("stable_token 响应缺少 access_token", endpoint="/cgi-bin/stable_token")
        return token, float(expires_in)

    # -- API calls ------------------------------------------------------------------------------------------

    async def code2session(self, code: str) -> Session:
        """Exchange a wx.login code for the user's openid (single use; 40029 when invalid or used)."""
        params = {"appid": self.appid, "secret": self._secret, "js_code": code,
                  "grant_type": "authorization_code"}
        data = await self._request("GET", "/sns/jscode2session", params=params)
        openid = data.get("openid")
        if not isinstance(openid, str) or not openid:
            raise WeChatUnavailable("jscode2session 响应缺少 openid", endpoint="/sns/jscode2session")
        return Session(openid=openid, unionid=data.get("unionid") or None, session_key=data.get("session_key", ""))

    async def get_phone_number(self, code: str) -> PhoneNumber:
        """Exchange a getPhoneNumber button code for the user's verified number (single use; 40029 when the
        code is invalid, used or expired)."""
        path = "/wxa/business/getuserphonenumber"
        info = (await self._call("POST", path, {"code": code})).get("phone_info")
        if not isinstance(info, dict) or not info.get("purePhoneNumber"):
            raise WeChatUnavailable("getuserphonenumber 响应缺少 phone_info", endpoint=path)
        return PhoneNumber(phone=str(info["purePhoneNumber"]), country_code=str(info.get("countryCode") or ""))

    async def send_subscribe(self, touser: str, template_id: str, data: Mapping[str, Any], page: str | None = None,
                             miniprogram_state: MiniprogramState = "formal", lang: str = "zh_CN") -> int | None:
        """subscribeMessage.send; `data` maps keyword to value (or to {"value": ...}). Returns WeChat's msgid."""
        body: dict[str, Any] = {
            "touser": touser,
            "template_id": template_id,
            "data": {key: value if isinstance(value, Mapping) else {"value": str(value)}
                     for key, value in data.items()},
            "miniprogram_state": miniprogram_state,
            "lang": lang,
        }
        if page:
            body["page"] = page
        reply = await self._call("POST", "/cgi-bin/message/subscribe/send", body)
        return reply.get("msgid")

    async def send_customer_service(self, touser: str, msgtype: str, payload: Mapping[str, Any]) -> None:
        """customerServiceMessage.send, e.g. msgtype "text" with payload {"content": "..."}."""
        body = {"touser": touser, "msgtype": msgtype, msgtype: dict(payload)}
        await self._call("POST", "/cgi-bin/message/custom/send", body)

    async def get_unlimited_wxacode(self, scene: str, page: str | None = None, width: int = 430, *,
                                    check_path: bool = True, env_version: str = "release",
                                    auto_color: bool = False, line_color: Mapping[str, int] | None = None,
                                    is_hyaline: bool = False) -> bytes:
        """wxacode.getUnlimited: the image bytes (WeChat answers JSON only on error)."""
        body: dict[str, Any] = {"scene": scene, "width": width, "check_path": check_path,
                                "env_version": env_version, "auto_color": auto_color, "is_hyaline": is_hyaline}
        if page:
            body["page"] = page
        if line_color is not None:
            body["line_color"] = dict(line_color)
        return await self._call("POST", "/wxa/getwxacodeunlimit", body, image=True)

    async def msg_sec_check(self, openid: str, content: str, *, scene: int = SCENE_SOCIAL,
                            timeout: float | None = None) -> SecCheck:
        """security.msgSecCheck v2: WeChat's verdict on text a user shows to others. `openid` is the author's (who
        must have opened the mini-program within two hours); `timeout` may be shorter than the client's."""
        body = {"content": content, "version": 2, "scene": scene, "openid": openid}
        reply = await self._call("POST", "/wxa/msg_sec_check", body, timeout=timeout)
        result = reply.get("result") if isinstance(reply.get("result"), dict) else {}
        suggest = result.get("suggest")
        if suggest not in ("pass", "review", "risky"):
            raise WeChatUnavailable("msg_sec_check 响应缺少 result.suggest", endpoint="/wxa/msg_sec_check")
        return SecCheck(suggest=suggest, label=int(result.get("label") or 0), trace_id=str(reply.get("trace_id", "")))

    # -- plumbing --------------------------------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any], *, image: bool = False,
                    timeout: float | None = None) -> Any:
        """An access-token call; when WeChat rejects the token, fetch a new one and retry exactly once."""
        token = await self.access_token()
        try:
            return await self._request(method, path, params={"access_token": token}, json_body=body, image=image,
                                       timeout=timeout)
        except WeChatError as exc:
            if exc.errcode not in TOKEN_ERRCODES:
                raise
            log.info("WeChat rejected access token %s on %s (errcode %s); refreshing once",
                     fingerprint(token), path, exc.errcode)
        token = (await self._token.refresh(rejected=token)).token
        return await self._request(method, path, params={"access_token": token}, json_body=body, image=image,
                                   timeout=timeout)

    async def _request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                       json_body: Any = None, image: bool = False, timeout: float | None = None) -> Any:
        started = time.perf_counter()
        limit = self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout)
        try:
            async with self._session.request(method, self.base_url + path, params=params, json=json_body,
                                             timeout=limit) as resp:
                status, content_type, raw = resp.status, resp.content_type, await resp.read()
        except TimeoutError:
            log.warning("WeChat %s timed out after %.1fs", path, time.perf_counter() - started)
            raise WeChatTimeout(f"调用超时（{limit.total} 秒）", endpoint=path) from None
        except aiohttp.ClientError as exc:
            log.warning("WeChat %s unreachable: %s", path, type(exc).__name__)
            raise WeChatUnavailable(f"无法连接微信服务器（{type(exc).__name__}）", endpoint=path) from None
        if status != 200:
            log.warning("WeChat %s answered HTTP %s", path, status)
            raise WeChatUnavailable(f"微信服务器返回 HTTP {status}", endpoint=path)
        if image and content_type.startswith("image/"):
            return raw
        try:
            data = json.loads(raw)
        except ValueError:
            raise WeChatUnavailable("微信服务器返回的内容无法解析", endpoint=path) from None
        if not isinstance(data, dict):
            raise WeChatUnavailable("微信服务器返回的内容无法解析", endpoint=path)
        errcode = data.get("errcode") or 0
        if errcode:
            log.info("WeChat %s: errcode %s", path, errcode)
            raise WeChatError(int(errcode), str(data.get("errmsg", "")), endpoint=path)
        if image:
            raise WeChatUnavailable("微信服务器未返回图片", endpoint=path)
        return data
