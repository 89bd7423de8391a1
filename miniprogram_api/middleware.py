"""Error mapping and request metrics, each in one place."""

from __future__ import annotations

import logging
import time

from aiohttp import web

import speedups
from appkeys import METRICS
from errors import DomainError

log = logging.getLogger("referral_cloud.http")

_HTTP_CODES = {
    400: ("BAD_REQUEST", "请求有误"),
    401: ("UNAUTHENTICATED", "请先登录"),
    403: ("FORBIDDEN", "您没有权限进行此操作"),
    404: ("NOT_FOUND", "未找到该页面或记录"),
    405: ("METHOD_NOT_ALLOWED", "不支持该请求方式"),
    413: ("PAYLOAD_TOO_LARGE", "请求内容过大（上限 1 MiB）"),
    415: ("UNSUPPORTED_MEDIA_TYPE", "不支持的内容类型"),
    429: ("TOO_MANY_REQUESTS", "操作过于频繁，请稍后再试"),
    431: ("HEADERS_TOO_LARGE", "请求头过大"),
    500: ("INTERNAL_ERROR", "服务器内部错误，请稍后再试"),
    504: ("TIMEOUT", "处理超时，请稍后再试"),
}


def error_parts(status: int) -> tuple[str, str]:
    """The code and Chinese message of an HTTP error we have no more specific words for."""
    return _HTTP_CODES.get(status, ("HTTP_ERROR", "请求未能完成"))


def error_body(status: int, code: str, message: str, detail: dict | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "detail": detail or {}}},
                             status=status, dumps=speedups.dumps)


@web.middleware
async def error_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DomainError as exc:
        return error_body(exc.status, exc.code, exc.message, exc.detail)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_body(exc.status, *error_parts(exc.status))
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        # A 5xx is always a bug: log it with the route, never echo internals to the caller.
        log.exception("unhandled error on %s %s", request.method, _route_name(request))
        return error_body(500, *error_parts(500))


def _route_name(request: web.Request) -> str:
    info = request.match_info
    route = info.route if info is not None else None
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[METRICS].observe(request.method, _route_name(request), status,
                                     time.perf_counter() - started)
