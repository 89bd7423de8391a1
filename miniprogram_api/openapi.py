"""The OpenAPI 3.1 document, built from the route table's declared schemas."""

from __future__ import annotations

import re

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from miniprogram_api.routing import RouteSpec
from miniprogram_api.schemas import ErrorOut

REF = "#/components/schemas/{model}"
_STATUS_TEXT = {400: "请求有误", 401: "未登录或凭证无效", 403: "无权限", 404: "未找到", 409: "冲突",
                410: "已失效", 413: "请求内容过大", 422: "输入有误", 429: "过于频繁", 503: "外部系统不可用"}


def _path_params(path: str) -> list[dict]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}
             if name == "id" else {"type": "string"}} for name in re.findall(r"{(\w+)}", path)]


def _query_params(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [{"name": name, "in": "query", "required": name in required, "schema": prop}
            for name, prop in schema.get("properties", {}).items()]


def _success_schema(spec: RouteSpec, media: str, ref) -> dict:
    # The response model describes the JSON answer; a route that also offers a download (csv, xlsx) sends it as is.
    if media == "application/json":
        return ref(spec.response) if spec.response is not None else {"type": "object"}
    if media.startswith("text/"):
        return {"type": "string"}
    return {"type": "string", "format": "binary"}


def build_openapi(routes: list[RouteSpec]) -> dict:
    models = {ErrorOut}
    for spec in routes:
        models.update(m for m in (spec.body, spec.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    keyed, definitions = models_json_schema([(m, "validation") for m in ordered], ref_template=REF)
    schemas = dict(definitions.get("$defs", {}))

    def ref(model: type[BaseModel]) -> dict:
        return keyed[(model, "validation")]

    paths: dict[str, dict] = {}
    for spec in routes:
        op: dict = {"summary": spec.summary, "tags": spec.tags,
                    "operationId": f"{spec.method.lower()}_{spec.handler.__module__.split('.')[-1]}"
                                   f"_{spec.handler.__name__}"}
        params = _path_params(spec.path) + (_query_params(spec.query) if spec.query else [])
        if params:
            op["parameters"] = params
        if spec.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref(spec.body)}}}
        elif spec.upload:
            op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {"file": {"type": "string", "format": "binary"}}}}}}
        ok = str(spec.status)
        # A route may answer one of several media types (an attachment is served as what it is).
        success = {"description": "成功", "content": {media: {"schema": _success_schema(spec, media, ref)}
                                                      for media in spec.content_type.split(", ")}}
        responses = {ok: success}
        errors = {422: _STATUS_TEXT[422]} if spec.body or spec.query or spec.upload else {}
        if spec.auth:
            # Every signed-in route can refuse the caller's kind (a patient on a staff route, and back).
            errors[401] = _STATUS_TEXT[401]
            errors[403] = _STATUS_TEXT[403]
        if "{" in spec.path:
            errors[404] = _STATUS_TEXT[404]
        errors.update(spec.responses)
        for status, text in sorted(errors.items()):
            responses[str(status)] = {"description": text,
                                      "content": {"application/json": {"schema": ref(ErrorOut)}}}
        op["responses"] = responses
        if spec.auth:
            op["security"] = [{"bearer": []}]
        paths.setdefault(spec.path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "双向转诊云平台 API", "version": "1.0.0",
                 "description": "医联体双向转诊云平台：微信小程序、管理后台与外部系统使用的接口。"},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
