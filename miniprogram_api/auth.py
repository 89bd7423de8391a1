"""Auth routes: WeChat login, refresh rotation, logout, staff and patient binding, who am I."""

from __future__ import annotations

import time
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from accounts import login, sessions
from accounts.principal import authenticate, revoked_key
from accounts.views import account_view
from appkeys import CIPHER, KV_STORE, SETTINGS, WECHAT
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
    phone: str = Field(min_length=1, max_length=20, description="手机号码")
    relation: Literal["self", "parent", "child", "spouse", "other"] = "self"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_person_name(value)


@api.route("POST", "/api/v1/auth/wx-login", summary="微信登录 (code2session)", tags=TAGS, auth=False,
           body=WxLoginIn, response=SessionOut, responses={401: "code 无效或已使用", 503: "微信不可用"})
async def wx_login(request: web.Request) -> web.Response:
    body = await parse_body(request, WxLoginIn)
    account = await login.resolve_login_code(request.app[WECHAT], body.code)
    return json_response(await sessions.issue_session(request.app[SETTINGS], account))


@api.route("POST", "/api/v1/auth/refresh", summary="刷新登录（轮换刷新凭证）", tags=TAGS, auth=False,
           body=RefreshIn, response=SessionOut, responses={401: "凭证无效、过期或被重复使用"})
async def refresh(request: web.Request) -> web.Response:
    body = await parse_body(request, RefreshIn)
    return json_response(await sessions.refresh_session(request.app[SETTINGS], body.refresh_token))


@api.route("POST", "/api/v1/auth/logout", summary="退出登录", tags=TAGS, body=LogoutIn, response=LogoutOut)
async def logout(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await parse_body(request, LogoutIn)
    revoked = await sessions.logout(principal, body.refresh_token)
    remaining = principal.token_expires_at - time.time()
    if remaining > 0:
        await request.app[KV_STORE].set(revoked_key(principal.token_jti), "1", ex=remaining + 5)
    return json_response(LogoutOut(revoked=revoked))


@api.route("POST", "/api/v1/auth/bind-staff", summary="工作人员凭邀请码绑定微信", tags=TAGS, auth=False, status=201,
           body=BindStaffIn, response=SessionOut, responses={404: "邀请码无效", 410: "邀请码已使用或已过期",
                                                             409: "已绑定"})
async def bind_staff(request: web.Request) -> web.Response:
    body = await parse_body(request, BindStaffIn)
    account = await login.bind_staff(request.app[WECHAT], body.code, body.invite_token)
    return json_response(await sessions.issue_session(request.app[SETTINGS], account), status=201)


@api.route("POST", "/api/v1/auth/bind-patient", summary="就诊人实名绑定（可绑定多位家人）", tags=TAGS,
           auth=False, status=201, body=BindPatientIn, response=SessionOut,
           responses={422: "身份证号、姓名或手机号有误", 409: "已绑定"})
async def bind_patient(request: web.Request) -> web.Response:
    body = await parse_body(request, BindPatientIn)
    account = await login.bind_patient(request.app[WECHAT], request.app[CIPHER], code=body.code, name=body.name,
                                       id_number=body.id_number, phone=body.phone,
                                       relation=Relation(body.relation))
    return json_response(await sessions.issue_session(request.app[SETTINGS], account), status=201)


@api.route("GET", "/api/v1/me", summary="当前用户：身份、角色、机构、就诊人", tags=TAGS, response=AccountOut)
async def me(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    account = await WeChatAccount.get(id=principal.account_id)
    return json_response(await account_view(account, principal, request.app[CIPHER]))
