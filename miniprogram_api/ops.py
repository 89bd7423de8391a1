"""Operator routes: liveness, readiness (database and KV), Prometheus metrics, the API document."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from pydantic import BaseModel
from tortoise import connections

from appkeys import KV_STORE, METRICS, WECHAT
from miniprogram_api.routing import Api, json_response
from outbox import admin as outbox_admin

log = logging.getLogger("referral_cloud.ops")

api = Api()
TAGS = ["ops"]


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]
    wechat: dict | None = None


@api.route("GET", "/healthz", summary="存活检查", tags=TAGS, auth=False, response=Health)
async def healthz(request: web.Request) -> web.Response:
    return json_response(Health(status="ok"))


async def _check(name: str, probe) -> tuple[str, str]:
    try:
        await asyncio.wait_for(probe(), timeout=3)
        return name, "ok"
    except Exception as exc:  # readiness reports any failure, it never raises
        return name, f"error: {type(exc).__name__}"


@api.route("GET", "/readyz", summary="就绪检查（数据库与 Redis）", tags=TAGS, auth=False, response=Readiness,
           responses={503: "未就绪"})
async def readyz(request: web.Request) -> web.Response:
    async def database() -> None:
        await connections.get("default").execute_query("SELECT 1")

    results = dict(await asyncio.gather(_check("database", database),
                                        _check("redis", request.app[KV_STORE].ping)))
    ready = all(v == "ok" for v in results.values())
    wechat = request.app.get(WECHAT)
    status_fn = getattr(wechat, "status", None)
    body = Readiness(status="ok" if ready else "unavailable", checks=results,
                     wechat=await status_fn() if status_fn else None)
    return json_response(body, status=200 if ready else 503)


@api.route("GET", "/metrics", summary="Prometheus 指标", tags=TAGS, auth=False,
           content_type="text/plain")
async def metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS]
    try:
        registry.set_outbox(*await outbox_admin.queue_figures())
    except Exception as exc:  # the request metrics are still worth serving with the database down
        log.warning("metrics: outbox figures unavailable (%s)", type(exc).__name__)
    return web.Response(body=registry.render(), headers={"Content-Type": registry.content_type})


@api.route("GET", "/api/v1/openapi.json", summary="OpenAPI 文档", tags=TAGS, auth=False,
           content_type="application/json")
async def openapi(request: web.Request) -> web.Response:
    from miniprogram_api import all_routes
    from miniprogram_api.openapi import build_openapi

    return json_response(build_openapi(all_routes()))
