"""An institution's HIS connection, for its admin (and, later, the consortium office): read it (secrets never
shown), change it, and test it. The rules live in his.connection."""

from __future__ import annotations

from aiohttp import web

from accounts.principal import authenticate
from appkeys import CIPHER, HIS
from errors import NotFound
from his import connection
from miniprogram_api.directory import path_uuid
from miniprogram_api.routing import Api, json_response, parse_body
from models import Institution

api = Api()
TAGS = ["admin"]
PATH = "/api/v1/admin/institutions/{id}/his-connection"
DENIED = {403: "仅限该机构的管理员", 404: "机构不存在"}


async def _institution(request: web.Request) -> Institution:
    principal = await authenticate(request)
    institution = await Institution.get_or_none(public_id=path_uuid(request), deleted_at=None)
    if institution is None:
        raise NotFound("未找到该机构", code="INSTITUTION_NOT_FOUND")
    connection.require_connection_admin(principal, institution)
    return institution


@api.route("GET", PATH, summary="查看机构的 HIS 连接配置（不含密钥）", tags=TAGS, response=connection.ConnectionView,
           responses=DENIED)
async def show(request: web.Request) -> web.Response:
    return json_response(connection.connection_view(await _institution(request)))


@api.route("PUT", PATH, summary="修改机构的 HIS 连接配置（未提供的字段保持不变）", tags=TAGS,
           body=connection.ConnectionChange, response=connection.ConnectionView,
           responses=DENIED | {422: "配置不完整或格式有误"})
async def change(request: web.Request) -> web.Response:
    institution = await _institution(request)
    body = await parse_body(request, connection.ConnectionChange)
    actor = await authenticate(request)  # cached on the request by _institution
    saved = await connection.save_connection(request.app[CIPHER], institution, body, actor_staff_id=actor.staff_id)
    return json_response(connection.connection_view(saved))


@api.route("POST", PATH + "/test", summary="测试机构的 HIS 连接（网络、认证、metadata、患者检索）", tags=TAGS,
           response=connection.ConnectionTest, responses=DENIED)
async def test(request: web.Request) -> web.Response:
    institution = await _institution(request)
    return json_response(await connection.run_connection_test(request.app[HIS], institution))
