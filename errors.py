"""Domain errors. Each carries a stable code, an HTTP status and a Chinese message for the user;
`miniprogram_api.middleware` maps them to the error shape of DESIGN §7 in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "BAD_REQUEST"
    message = "请求有误"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 detail: dict[str, Any] | None = None, status: int | None = None) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.detail = detail or {}
        super().__init__(f"{self.code}: {self.message}")


class InvalidInput(DomainError):
    status = 422
    code = "INVALID_INPUT"
    message = "提交的内容不符合要求"


class Unauthenticated(DomainError):
    status = 401
    code = "UNAUTHENTICATED"
    message = "请先登录"


class Forbidden(DomainError):
    status = 403
    code = "FORBIDDEN"
    message = "您没有权限进行此操作"


class NotFound(DomainError):
    status = 404
    code = "NOT_FOUND"
    message = "未找到该记录"


class Conflict(DomainError):
    status = 409
    code = "CONFLICT"
    message = "操作冲突，请刷新后重试"


class Gone(DomainError):
    status = 410
    code = "GONE"
    message = "该链接已失效"


class TooManyRequests(DomainError):
    status = 429
    code = "TOO_MANY_REQUESTS"
    message = "操作过于频繁，请稍后再试"


class UpstreamUnavailable(DomainError):
    """An outside system (WeChat, a HIS) failed; the user should retry later."""

    status = 503
    code = "UPSTREAM_UNAVAILABLE"
    message = "外部系统暂时不可用，请稍后再试"
