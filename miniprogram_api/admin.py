"""Institution admin routes: invitations, departments and staff of the admin's own institution."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from accounts.invitations import create_invitation
from accounts.principal import authenticate
from appkeys import SETTINGS
from directory import admin as directory_admin
from directory.views import department_view, staff_admin_view
from miniprogram_api.directory import DepartmentOut, path_uuid
from miniprogram_api.pagination import PageQuery, paginate
from miniprogram_api.routing import Api, json_response, parse_body, parse_query
from models import Department, Role, Staff, WeChatAccount
from qr.render import png_data_url, render_png
from security.person_name import validate_person_name

api = Api()
TAGS = ["admin"]
RoleName = Literal["doctor", "approver", "admission_clerk", "expert", "admin"]


class InvitationIn(BaseModel):
    name: str = Field(min_length=1, max_length=60, description="受邀人姓名（规则同就诊人姓名）")
    roles: list[RoleName] = Field(min_length=1, max_length=5)
    department_id: uuid.UUID | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_person_name(value)


class InvitationOut(BaseModel):
    id: str
    name: str
    roles: list[str]
    expires_at: datetime
    invite_token: str = Field(description="只显示一次；受邀人在小程序中扫码或输入")
    qr_png: str = Field(description="邀请二维码 PNG（data URL）")


class DepartmentIn(BaseModel):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=64)
    ward: str = Field(default="", max_length=64)
    phone: str = Field(default="", max_length=32)


class DepartmentPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    ward: str | None = Field(default=None, max_length=64)
    phone: str | None = Field(default=None, max_length=32)
    is_active: bool | None = None


class StaffPatch(BaseModel):
    roles: list[RoleName] | None = Field(default=None, min_length=1, max_length=5)
    department_id: uuid.UUID | None = None
    is_active: bool | None = None
    title: str | None = Field(default=None, max_length=32)


class StaffAdminOut(BaseModel):
    id: str
    name: str
    title: str
    roles: list[str]
    role_names: list[str]
    is_active: bool
    department: DepartmentOut | None
    wechat_bound: bool
    his_user_id: str | None


class DepartmentPage(BaseModel):
    items: list[DepartmentOut]
    next_cursor: str | None


class StaffPage(BaseModel):
    items: list[StaffAdminOut]
    next_cursor: str | None


class Deleted(BaseModel):
    deleted: bool = True


async def _admin(request: web.Request):
    principal = await authenticate(request)
    principal.require_role(Role.ADMIN)
    return principal


async def _staff_out(staff: Staff) -> dict:
    department = await Department.get_or_none(id=staff.department_id) if staff.department_id else None  # type: ignore[attr-defined]
    bound = await WeChatAccount.filter(staff_id=staff.id).exists()
    return staff_admin_view(staff, department, bound)


@api.route("POST", "/api/v1/admin/invitations", summary="邀请工作人员（一次性、有效期内）", tags=TAGS, status=201,
           body=InvitationIn, response=InvitationOut, responses={403: "仅限机构管理员", 404: "本机构没有该科室"})
async def invite(request: web.Request) -> web.Response:
    admin = await _admin(request)
    body = await parse_body(request, InvitationIn)
    invitation, token = await create_invitation(admin, name=body.name, roles=list(body.roles),
                                                department_id=body.department_id,
                                                ttl=request.app[SETTINGS].invitation_ttl)
    png = await asyncio.get_running_loop().run_in_executor(None, render_png, token)
    return json_response(InvitationOut(id=str(invitation.public_id), name=invitation.name,
                                       roles=invitation.roles, expires_at=invitation.expires_at,
                                       invite_token=token, qr_png=png_data_url(png)), status=201)


@api.route("GET", "/api/v1/admin/departments", summary="本机构科室（含停用）", tags=TAGS, query=PageQuery,
           response=DepartmentPage)
async def list_own_departments(request: web.Request) -> web.Response:
    admin = await _admin(request)
    rows, cursor = await paginate(Department.filter(institution_id=admin.institution_id, deleted_at=None),
                                  parse_query(request, PageQuery))
    return json_response({"items": [department_view(d) for d in rows], "next_cursor": cursor})


@api.route("POST", "/api/v1/admin/departments", summary="新增科室", tags=TAGS, status=201, body=DepartmentIn,
           response=DepartmentOut, responses={409: "本机构已有相同编码的科室"})
async def add_department(request: web.Request) -> web.Response:
    admin = await _admin(request)
    body = await parse_body(request, DepartmentIn)
    department = await directory_admin.create_department(admin, **body.model_dump())
    return json_response(department_view(department), status=201)


@api.route("PATCH", "/api/v1/admin/departments/{id}", summary="修改或停用科室", tags=TAGS,
           body=DepartmentPatch, response=DepartmentOut)
async def change_department(request: web.Request) -> web.Response:
    admin = await _admin(request)
    body = await parse_body(request, DepartmentPatch)
    department = await directory_admin.update_department(admin, path_uuid(request),
                                                         body.model_dump(exclude_none=True))
    return json_response(department_view(department))


@api.route("GET", "/api/v1/admin/staff", summary="本机构工作人员", tags=TAGS, query=PageQuery,
           response=StaffPage)
async def list_staff(request: web.Request) -> web.Response:
    admin = await _admin(request)
    rows, cursor = await paginate(Staff.filter(institution_id=admin.institution_id, deleted_at=None),
                                  parse_query(request, PageQuery))
    return json_response({"items": [await _staff_out(s) for s in rows], "next_cursor": cursor})


@api.route("PATCH", "/api/v1/admin/staff/{id}", summary="修改工作人员角色、科室或停用", tags=TAGS,
           body=StaffPatch, response=StaffAdminOut, responses={409: "不能移除自己的管理员角色或停用自己"})
async def change_staff(request: web.Request) -> web.Response:
    admin = await _admin(request)
    body = await parse_body(request, StaffPatch)
    staff = await directory_admin.update_staff(admin, path_uuid(request), roles=body.roles,
                                               department_id=body.department_id, is_active=body.is_active,
                                               title=body.title)
    return json_response(await _staff_out(staff))


@api.route("DELETE", "/api/v1/admin/staff/{id}", summary="移除工作人员（保留记录，解除微信绑定）", tags=TAGS,
           response=Deleted, responses={409: "不能删除自己的账号"})
async def delete_staff(request: web.Request) -> web.Response:
    admin = await _admin(request)
    await directory_admin.remove_staff(admin, path_uuid(request))
    return json_response(Deleted())
