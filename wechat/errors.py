"""What a WeChat call can fail with, so callers can tell "retry later" from "give up"."""

from __future__ import annotations

# Codes after which the same call may succeed later: system busy and the rate limits.
RETRYABLE_ERRCODES = frozenset({-1, 45009, 45011, 45047})
# Codes meaning our access token is no longer accepted: fetch a new one and retry once.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})


class WeChatError(Exception):
    """WeChat answered with a non-zero errcode (the errmsg is WeChat's own text, for logs)."""

    def __init__(self, errcode: int, errmsg: str = "", *, endpoint: str = "") -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        self.endpoint = endpoint
        super().__init__(f"{endpoint or 'wechat'}: errcode {errcode}: {errmsg}")

    @property
    def retryable(self) -> bool:
        return self.errcode in RETRYABLE_ERRCODES


class WeChatUnavailable(WeChatError):
    """WeChat could not be reached or gave no usable answer (connection, HTTP status, body); retry later."""

    def __init__(self, errmsg: str, *, endpoint: str = "") -> None:
        super().__init__(-1, errmsg, endpoint=endpoint)

    @property
    def retryable(self) -> bool:
        return True


class WeChatTimeout(WeChatUnavailable):
    """The call was abandoned after settings.wechat_timeout seconds; it may or may not have taken effect."""
