"""Routes for what a referral carries besides its state: orders at the target, reports, attachments."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, Field

from accounts.principal import authenticate
from appkeys import CIPHER, HIS, STORAGE
from miniprogram_api.routing import Api, json_response, parse_body, read_upload
from referrals import attachments, orders
from referrals.attachments import DOWNLOAD_MEDIA, MAX_BYTES, attachment_view

api = Api()
TAGS = ["referral records"]
ERRORS = {403: "无权限", 404: "转诊单不存在或无权查看", 409: "当前状态不能执行该操作"}


class OrderIn(BaseModel):
    kind: Literal["exam", "lab", "treatment", "prescription"]
    code: str = Field(min_length=1, max_length=32, description="接收机构的项目或药品编码")
    name: str = Field(min_length=1, max_length=100)
    note: str = Field(default="", max_length=500)
    dosage: str = Field(default="", max_length=100, description="处方：用法用量")
    quantity: float | None = Field(default=None, gt=0, le=10000)
    unit: str = Field(default="", max_length=16)


class OrderOut(BaseModel):
    id: str
    kind: str
    kind_name: str
    code: str
    name: str
    state: str = Field(description="pending（等待送达 HIS）/ placed / rejected")
    state_name: str = Field(description="状态的中文名称")
    his_order_id: str
    created_at: datetime


class OrderList(BaseModel):
    items: list[OrderOut]
    next_cursor: str | None = None


class ReportOut(BaseModel):
    his_id: str
    order_id: str | None
    order_name: str | None
    code: str
    name: str
    status: str
    category: str
    issued: datetime | None
    conclusion: str


class ReportList(BaseModel):
    items: list[ReportOut]
    next_cursor: str | None = None


class AttachmentOut(BaseModel):
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime
    url: str


class AttachmentList(BaseModel):
    items: list[AttachmentOut]
    next_cursor: str | None = None


def _order_view(order) -> dict:
    return {"id": str(order.public_id), "kind": order.kind, "kind_name": orders.KIND_NAMES[order.kind],
            "code": order.code, "name": order.name, "state": order.state,
            "state_name": orders.STATE_NAMES.get(order.state, order.state), "his_order_id": order.his_order_id,
            "created_at": order.created_at}


@api.route("POST", "/api/v1/referrals/{id}/orders", summary="转诊医生在接收机构开具检查/检验/治疗/处方", tags=TAGS,
           body=OrderIn, response=OrderOut, status=202, responses=ERRORS)
async def place_order(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await parse_body(request, OrderIn)
    order = await orders.place_order(principal, request.match_info["id"], **body.model_dump())
    return json_response(_order_view(order), status=202)


@api.route("GET", "/api/v1/referrals/{id}/orders", summary="本转诊单的医嘱及送达状态", tags=TAGS,
           response=OrderList, responses=ERRORS)
async def list_orders(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    rows = await orders.orders_of(principal, request.match_info["id"])
    return json_response({"items": [_order_view(o) for o in rows], "next_cursor": None})


@api.route("GET", "/api/v1/referrals/{id}/reports", summary="接收机构的检查检验报告（实时读取其 HIS）", tags=TAGS,
           response=ReportList, responses={**ERRORS, 503: "接收机构 HIS 暂时不可用"})
async def list_reports(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    reports, by_order = await orders.reports_of(request.app[HIS], request.app[CIPHER], principal,
                                                request.match_info["id"])
    items = []
    for report in reports:
        order = by_order.get(report.order_id)
        items.append({"his_id": report.his_id, "order_id": report.order_id or None,
                      "order_name": order.name if order else None, "code": report.code, "name": report.name,
                      "status": report.status, "category": report.category, "issued": report.issued,
                      "conclusion": report.conclusion})
    return json_response({"items": items, "next_cursor": None})


@api.route("POST", "/api/v1/referrals/{id}/attachments", summary="上传附件（JPG/PNG/PDF，≤10 MB）", tags=TAGS,
           upload=True, response=AttachmentOut, status=201,
           responses={**ERRORS, 400: "上传内容格式不正确", 413: "文件过大", 415: "文件类型不支持"})
async def upload(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    filename, data = await read_upload(request, MAX_BYTES)
    attachment = await attachments.add_attachment(principal, request.app[STORAGE], request.match_info["id"],
                                                  filename=filename, data=data)
    referral, _ = await attachments.attachments_of(principal, request.match_info["id"])
    return json_response(attachment_view(attachment, referral), status=201)


@api.route("GET", "/api/v1/referrals/{id}/attachments", summary="附件列表", tags=TAGS, response=AttachmentList,
           responses=ERRORS)
async def list_attachments(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    referral, rows = await attachments.attachments_of(principal, request.match_info["id"])
    return json_response({"items": [attachment_view(a, referral) for a in rows], "next_cursor": None})


@api.route("GET", "/api/v1/referrals/{id}/attachments/{attachment_id}", summary="下载附件", tags=TAGS,
           content_type=DOWNLOAD_MEDIA, responses=ERRORS)
async def download(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    attachment, data = await attachments.read_attachment(principal, request.app[STORAGE], request.match_info["id"],
                                                         request.match_info["attachment_id"])
    return file_response(attachment.filename, attachment.content_type, data)


def file_response(filename: str, content_type: str, data: bytes) -> web.Response:
    """An attachment's bytes as a download that no cache keeps."""
    return web.Response(body=data, content_type=content_type, headers={
        "Content-Disposition": "attachment; filename*=UTF-8''" + quote(filename, safe=""),
        "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"})
