"""Route table with schemas: each route declares its body/query/response models once, and the same
declaration drives request parsing and the OpenAPI document."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, BeforeValidator, ValidationError

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
    "float_type": "应为数字",
    "float_parsing": "应为数字",
    "date_type": "不是有效的日期",
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


MAX_JSON_DEPTH = 32  # our deepest schema nests 4 levels; deeper input only costs stack and time


def _check_json(data: Any) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH, and text with U+0000 (PostgreSQL stores no NUL character;
    nobody types one), walking without recursion."""
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        value, level, where = stack.pop()
        if isinstance(value, (dict, list)) and level > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            stack.extend((key, level, where or "body") for key in value)
            stack.extend((item, level + 1, f"{where}.{key}".lstrip(".")) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, level + 1, f"{where}.{index}".lstrip(".")) for index, item in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise _nul(where or "body")


def _too_deep() -> InvalidInput:
    return InvalidInput(f"请求内容嵌套过深（最多 {MAX_JSON_DEPTH} 层）", code="MALFORMED_JSON")


def _nul(field: str) -> InvalidInput:
    return InvalidInput(f"提交的内容有误（{field}: 含有控制字符 \\u0000）", code="INVALID_CHARACTERS",
                        detail={"fields": [{"field": field, "reason": "含有控制字符 \\u0000"}]})


def _load_json(raw: bytes) -> Any:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("请求内容不是有效的 JSON", code="MALFORMED_JSON") from None
    except RecursionError:  # the decoder gave up on the nesting before we could measure it
        raise _too_deep() from None
    _check_json(data)
    return data


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The body as `model`, validated strictly: JSON's own types only, so `true` and `"5"` are not numbers and
    `"yes"` is not a boolean (dates and ids still come as the strings JSON has for them)."""
    raw = await request.read() or b"{}"
    if not isinstance(_load_json(raw), dict):
        raise InvalidInput("请求内容应为 JSON 对象", code="MALFORMED_JSON")
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _query_int(value: Any) -> Any:
    if isinstance(value, str) and not re.fullmatch(r"-?[0-9]{1,18}", value):
        raise ValueError("应为整数")
    return value


def _query_bool(value: Any) -> Any:
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("应为 true 或 false")
        return value == "true"
    return value


# Query strings are text, so they cannot be validated strictly like JSON; these say which text is a number
# (digits, not "5.0" or " 5") and which a boolean ("true"/"false", not "yes", "on" or "1").
QueryInt = Annotated[int, BeforeValidator(_query_int)]
QueryBool = Annotated[bool, BeforeValidator(_query_bool)]


def parse_query(request: web.Request, model: type[M]) -> M:
    query = dict(request.query)
    for key, value in query.items():
        if "\x00" in key or "\x00" in value:
            raise _nul(key)
    try:
        return model.model_validate(query)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def read_upload(request: web.Request, max_bytes: int) -> tuple[str, bytes]:
    """The `file` part of a multipart/form-data upload: (filename, bytes), refused past `max_bytes` (413). A body
    aiohttp cannot take apart (no boundary, a control character or an over-long line in a part header) is the
    sender's error, not ours."""
    from urllib.parse import unquote

    from aiohttp import BodyPartReader
    from aiohttp.http_exceptions import HttpProcessingError

    if not request.content_type.startswith("multipart/"):
        raise InvalidInput("请以 multipart/form-data 上传文件（字段名 file）", code="MULTIPART_REQUIRED")
    try:
        reader = await request.multipart()
        part = await reader.next()
        while part is not None and getattr(part, "name", None) != "file":
            part = await reader.next()
        if not isinstance(part, BodyPartReader):
            raise InvalidInput("缺少文件（字段名 file）", code="FILE_REQUIRED")
        data = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            data += chunk
            if len(data) > max_bytes:
                raise InvalidInput(f"附件不能超过 {max_bytes // (1024 * 1024)} MB", code="FILE_TOO_LARGE",
                                   status=413)
        return unquote(part.filename or "附件"), bytes(data)
    except (ValueError, HttpProcessingError):
        # aiohttp raises ValueError for a missing boundary and HttpProcessingError for a bad part header.
        raise InvalidInput("上传内容格式不正确（multipart/form-data）", code="MULTIPART_MALFORMED",
                           status=400) from None


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
    content_type: str = "application/json"  # several as "a, b" when the response is one of them
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
    # Models and plain dicts alike go through one encoder, so every time has the one format of api_time.
    data = model.model_dump(mode="python") if isinstance(model, BaseModel) else model
    return web.Response(body=speedups.encode(data), status=status, content_type="application/json", charset="utf-8")
