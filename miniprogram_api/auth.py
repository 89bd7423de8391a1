"""Auth routes: WeChat login, refresh rotation, logout, staff and patient binding, who am I."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from accounts import binding, login, sessions
from accounts.principal import authenticate
from accounts.views import account_view
from appkeys import CIPHER, HIS, KV_STORE, SETTINGS, WECHAT
from miniprogram_api.binding_requests import request_detail
from miniprogram_api.routing import Api, json_response, parse_body
from miniprogram_api.schemas import AccountOut, SessionOut
from models import Relation, WeChatAccount
from security.person_name import validate_person_name

api = Api()
TAGS = ["auth"]


class WxLoginIn(BaseModel):
    code: str = Field(min_length=1, max_length=128, description="wx.login() 返回的 code")


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=256)


class LogoutOut(BaseModel):
    revoked: int


class BindStaffIn(BaseModel):
    code: str = Field(min_length=1, max_length=128)
    invite_token: str = Field(min_length=1, max_length=128)


class BindPatientIn(BaseModel):
    code: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=60, description="就诊人姓名（1–30 字，不含数字和控制字符）")
    id_number: str = Field(min_length=1, max_length=32, description="居民身份证号码")
    relation: Literal["self", "parent", "child", "spouse", "other"] = "self"
    phone_code: str | None = Field(default=None, min_length=1, max_length=128,
                                   description="本人绑定：手机号快捷验证按钮（getPhoneNumber）返回的 code；"
                                               "微信验证的手机号须与医院登记的一致")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_person_name(value)


@api.route("POST", "/api/v1/auth/wx-login", summary="微信登录 (code2session)", tags=TAGS, auth=False,
           body=WxLoginIn, response=SessionOut, responses={401: "code 无效或已使用", 503: "微信不可用"})
async def wx_login(request: web.Request) -> web.Response:
    body = await parse_body(request, WxLoginIn)
    account = await login.resolve_login_code(request.app[WECHAT], body.code, request.app[CIPHER])
    return json_response(await sessions.issue_session(request.app[SETTINGS], account))


@api.route("POST", "/api/v1/auth/refresh", summary="刷新登录（轮换刷新凭证）", tags=TAGS, auth=False,
           body=RefreshIn, response=SessionOut, responses={401: "凭证无效、过期或被重复使用"})
async def refresh(request: web.Request) -> web.Response:
    body = await parse_body(request, RefreshIn)
    return json_response(await sessions.refresh_session(request.app[SETTINGS], request.app[KV_STORE],
                                                        body.refresh_token))


@api.route("POST", "/api/v1/auth/logout", summary="退出登录", tags=TAGS, body=LogoutIn, response=LogoutOut)
async def logout(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await parse_body(request, LogoutIn)
    revoked = await sessions.logout(request.app[SETTINGS], request.app[KV_STORE], principal, body.refresh_token)
    return json_response(LogoutOut(revoked=revoked))


@api.route("POST", "/api/v1/auth/bind-staff", summary="工作人员凭邀请码绑定微信", tags=TAGS, auth=False, status=201,
           body=BindStaffIn, response=SessionOut, responses={404: "邀请码无效", 410: "邀请码已使用或已过期",
                                                             409: "已绑定"})
async def bind_staff(request: web.Request) -> web.Response:
    body = await parse_body(request, BindStaffIn)
    account = await login.bind_staff(request.app[WECHAT], body.code, body.invite_token, request.app[CIPHER])
    return json_response(await sessions.issue_session(request.app[SETTINGS], account), status=201)


@api.route("POST", "/api/v1/auth/bind-patient", summary="就诊人实名绑定（本人凭微信手机号，或现场/本人确认）",
           tags=TAGS, auth=False, status=201, body=BindPatientIn, response=SessionOut,
           responses={403: "缺少身份证明（BINDING_PROOF_REQUIRED：detail.missing 缺少的证明，"
                           "detail.accepted 可用的证明，detail.binding_request 待确认申请的二维码）",
                      422: "身份证号、姓名有误或手机号验证凭证无效", 409: "已绑定", 503: "微信或 HIS 不可用"})
async def bind_patient(request: web.Request) -> web.Response:
    body = await parse_body(request, BindPatientIn)
    settings = request.app[SETTINGS]
    outcome = await binding.request_binding(
        request.app[WECHAT], request.app[CIPHER], request.app[HIS], code=body.code, name=body.name,
        id_number=body.id_number, relation=Relation(body.relation), phone_code=body.phone_code,
        request_ttl=settings.binding_request_ttl)
    if not outcome.bound:
        pending = await request_detail(request, outcome.request) if outcome.request else None
        raise binding.proof_required(outcome, pending)
    return json_response(await sessions.issue_session(settings, outcome.account), status=201)


@api.route("GET", "/api/v1/me", summary="当前用户：身份、角色、机构、就诊人", tags=TAGS, response=AccountOut)
async def me(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    account = await WeChatAccount.get(id=principal.account_id)
    return json_response(await account_view(account, principal, request.app[CIPHER]))
