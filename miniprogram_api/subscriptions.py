"""Subscription routes: what `wx.requestSubscribeMessage` returned (one credit per accepted one-time template),
and which templates to ask for with the credits the caller holds."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, model_validator

from accounts.principal import Principal, authenticate
from appkeys import KV_STORE, SETTINGS
from errors import Forbidden, InvalidInput
from miniprogram_api.routing import Api, json_response, parse_body
from notifications import credits
from notifications.templates import TEMPLATES, long_term_ids, template_by_id, template_id
from settings import Settings

api = Api()
TAGS = ["subscriptions"]
PURPOSES = {"approval": "待审批、审批超时提醒", "progress": "转诊进度（审批结果、改转、取消）",
            "admission": "入院通知与入院前一天提醒", "chat": "会诊与查房会话的未读消息（离线时）"}

Choice = Literal["accept", "reject", "ban", "filter", "acceptWithAudio"]


class SubscriptionsIn(BaseModel):
    results: dict[str, Choice] = Field(
        min_length=1, max_length=10,
        description="wx.requestSubscribeMessage 的结果：{模板ID: accept|reject|ban|filter}")

    @model_validator(mode="before")
    @classmethod
    def _drop_errmsg(cls, data):
        # The mini-program may pass the success object as it is, with its errMsg beside the template ids.
        if isinstance(data, dict) and isinstance(data.get("results"), dict):
            data = data | {"results": {k: v for k, v in data["results"].items() if k != "errMsg"}}
        return data


class CreditOut(BaseModel):
    template_id: str
    credits: int = Field(description="剩余可发送次数（一次性订阅）")
    long_term: bool
    banned: bool


class TemplateOut(BaseModel):
    template_id: str
    title: str
    purpose: str
    long_term: bool
    suggested: bool = Field(description="建议向当前用户申请订阅")


class SubscriptionsOut(BaseModel):
    templates: list[TemplateOut]
    items: list[CreditOut]


def _suggested(principal: Principal) -> set[str]:
    keys = set()
    if principal.staff_id is not None:
        keys |= {"approval", "progress"}
        if principal.roles & {"doctor", "expert"}:
            keys.add("chat")  # consultations and ward rounds
    if principal.patient_ids:
        keys |= {"progress", "admission"}
    return keys


async def _reply(principal: Principal, settings: Settings) -> web.Response:
    long_term = long_term_ids(settings)
    suggested = _suggested(principal)
    templates = [TemplateOut(template_id=template_id(settings, t.key), title=t.title, purpose=PURPOSES[t.key],
                             long_term=template_id(settings, t.key) in long_term, suggested=t.key in suggested)
                 for t in TEMPLATES.values()]
    rows = await credits.credits_of(principal.account_id)
    return json_response(SubscriptionsOut(templates=templates, items=[
        CreditOut(template_id=r.template_id, credits=r.credits, long_term=r.long_term, banned=r.banned)
        for r in rows]))


def _bound(principal: Principal) -> None:
    if principal.kind == "unbound":
        raise Forbidden("请先完成身份绑定再订阅消息", code="BINDING_REQUIRED")


@api.route("GET", "/api/v1/subscriptions", summary="可订阅的消息模板与剩余次数", tags=TAGS,
           response=SubscriptionsOut, responses={403: "未绑定身份"})
async def overview(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    _bound(principal)
    return await _reply(principal, request.app[SETTINGS])


@api.route("POST", "/api/v1/subscriptions", summary="记录 wx.requestSubscribeMessage 的结果（每次 accept 一次额度）",
           tags=TAGS, body=SubscriptionsIn, response=SubscriptionsOut, responses={403: "未绑定身份"})
async def record(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    _bound(principal)
    body = await parse_body(request, SubscriptionsIn)
    settings = request.app[SETTINGS]
    unknown = sorted(tid for tid in body.results if template_by_id(settings, tid) is None)
    if unknown:
        raise InvalidInput("包含本平台未使用的消息模板", code="UNKNOWN_TEMPLATE", detail={"template_ids": unknown})
    long_term = long_term_ids(settings)
    for tid, choice in body.results.items():
        await credits.record_choice(request.app[KV_STORE], principal.account_id, tid, choice, source="app",
                                    long_term=tid in long_term)
    return await _reply(principal, settings)
