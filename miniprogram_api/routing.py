"""Route table with schemas: each route declares its body/query/response models once, and the same
declaration drives request parsing and the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

import speedups
from errors import InvalidInput

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/api/v1"

_FIELD_ERRORS = {
    "missing": "缺少必填项",
    "string_type": "应为文本",
    "int_type": "应为整数",
    "int_parsing": "应为整数",
    "bool_type": "应为布尔值",
    "bool_parsing": "应为布尔值",
    "string_too_short": "内容过短",
    "string_too_long": "内容过长",
    "string_pattern_mismatch": "格式不正确",
    "enum": "不是允许的取值",
    "literal_error": "不是允许的取值",
    "uuid_parsing": "不是有效的编号",
    "uuid_type": "不是有效的编号",
    "date_from_datetime_parsing": "不是有效的日期",
    "date_parsing": "不是有效的日期",
    "extra_forbidden": "不允许的字段",
    "list_type": "应为列表",
    "dict_type": "应为对象",
    "model_type": "应为对象",
    "too_short": "条目过少",
    "too_long": "条目过多",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "value_error": "取值不正确",
}


def validation_error(exc: ValidationError) -> InvalidInput:
    """A pydantic error as our 422, naming each field in Chinese without echoing the input."""
    fields = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        reason = _FIELD_ERRORS.get(err["type"], "取值不正确")
        if err["type"] == "value_error":
            # Our own validators raise ValueError with a Chinese message.
            reason = str(err.get("ctx", {}).get("error", reason)) or reason
        fields.append({"field": loc, "reason": reason})
    summary = "；".join(f"{f['field']}: {f['reason']}" for f in fields[:3])
    return InvalidInput(f"提交的内容有误（{summary}）", detail={"fields": fields})


async def parse_body(request: web.Request, model: type[M]) -> M:
    raw = await request.read()
    if not raw:
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("请求内容不是有效的 JSON", code="MALFORMED_JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("请求内容应为 JSON 对象", code="MALFORMED_JSON")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def parse_query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc) from None


@dataclass
class RouteSpec:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: list[str]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    responses: dict[int, str] = field(default_factory=dict)
    auth: bool = True
    content_type: str = "application/json"
    status: int = 200
    upload: bool = False  # the body is multipart/form-data with one `file` part


class Api:
    """Collects route specs; `install` adds them to an aiohttp router."""

    def __init__(self) -> None:
        self.routes: list[RouteSpec] = []

    def route(self, method: str, path: str, *, summary: str, tags: list[str] | None = None,
              body: type[BaseModel] | None = None, query: type[BaseModel] | None = None,
              response: type[BaseModel] | None = None, auth: bool = True,
              responses: dict[int, str] | None = None,
              content_type: str = "application/json", status: int = 200,
              upload: bool = False) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.routes.append(RouteSpec(method, path, handler, summary, tags or [], body, query,
                                         response, responses or {}, auth, content_type, status, upload))
            return handler

        return decorate

    def install(self, app: web.Application) -> None:
        for spec in self.routes:
            app.router.add_route(spec.method, spec.path, spec.handler)


def json_response(model: BaseModel | dict | list, status: int = 200) -> web.Response:
    body = model.model_dump_json().encode() if isinstance(model, BaseModel) else speedups.encode(model)
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")
