"""Reserved referral beds per department and day, and each institution's referral policy."""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from accounts.principal import Principal, authenticate
from errors import NotFound
from miniprogram_api.directory import path_uuid
from miniprogram_api.routing import Api, json_response, parse_body, parse_query
from models import Department, Role
from referrals import capacity
from referrals.policy import policy_of, policy_view, update_policy
from timeutil import china_today

api = Api()
TAGS = ["capacity"]


class RangeQuery(BaseModel):
    date_from: date | None = Field(default=None, alias="from", ge=date(2000, 1, 1), le=date(2100, 12, 31))
    date_to: date | None = Field(default=None, alias="to", ge=date(2000, 1, 1), le=date(2100, 12, 31))


class CapacityDayOut(BaseModel):
    date: date
    capacity: int
    booked: int
    available: int


class CapacityOut(BaseModel):
    department_id: str
    days: list[CapacityDayOut]


class CapacityDayIn(BaseModel):
    date: date
    capacity: int = Field(ge=0, le=500)


class CapacityIn(BaseModel):
    days: list[CapacityDayIn] = Field(min_length=1, max_length=366, description="今天至一年内的日期，每天一项")

    @field_validator("days")
    @classmethod
    def _one_entry_per_day(cls, value: list[CapacityDayIn]) -> list[CapacityDayIn]:
        if len({d.date for d in value}) != len(value):
            raise ValueError("同一日期只能填写一次")
        return value


class PolicyModel(BaseModel):
    source_approval_up: bool
    source_approval_down: bool
    source_approval_lateral: bool
    approver_roles: list[str]
    deadline_hours: dict[str, float]
    slip_grace_hours: int
    early_arrival_days: int = Field(description="允许患者提前到院办理入院的天数（0：仅限预约入院当天起）")
    what_to_bring: str = Field(description="患者入院需携带的物品（入院凭条、通知和公众号回复中使用）")
    consult_accept_hours: dict[str, float] = Field(description="本机构科室接诊会诊请求的时限（小时，按紧急程度）")
    consult_opinion_is_review: bool = Field(description="目标科室专家“建议上转”的会诊意见视同本机构的临床审核")


class PolicyIn(BaseModel):
    source_approval_up: bool | None = None
    source_approval_down: bool | None = None
    source_approval_lateral: bool | None = None
    approver_roles: list[str] | None = Field(default=None, min_length=1, max_length=5)
    deadline_hours: dict[str, float] | None = None
    slip_grace_hours: int | None = Field(default=None, ge=0, le=24 * 14)
    early_arrival_days: int | None = Field(default=None, ge=0, le=14,
                                           description="入院凭条自预约入院日前几天起可用（0–14，默认 0）")
    what_to_bring: str | None = Field(default=None, max_length=200, description="留空则使用平台默认内容")
    consult_accept_hours: dict[str, float] | None = None
    consult_opinion_is_review: bool | None = None

    @field_validator("what_to_bring")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        # It goes into WeChat messages, which allow no line breaks.
        return " ".join(value.split()) if value is not None else None

    @field_validator("approver_roles")
    @classmethod
    def _roles(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and set(value) - {r.value for r in Role}:
            raise ValueError("角色不正确")
        return value

    @field_validator("deadline_hours", "consult_accept_hours")
    @classmethod
    def _deadlines(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            if set(value) != {"routine", "urgent", "emergency"}:
                raise ValueError("需分别填写 routine、urgent、emergency 的时限")
            if any(not 0 < hours <= 24 * 30 for hours in value.values()):
                raise ValueError("时限应在 0 到 720 小时之间")
        return value


async def _department_for(principal: Principal, request: web.Request, *, write: bool) -> Department:
    """Admins and approvers manage their own institution's beds; any staff may read any department's."""
    principal.require_staff()
    if write:
        return await capacity.department_to_publish(principal, path_uuid(request))
    department = await Department.get_or_none(public_id=path_uuid(request), deleted_at=None)
    if department is None:
        raise NotFound("未找到该科室", code="DEPARTMENT_NOT_FOUND")
    return department


@api.route("GET", "/api/v1/departments/{id}/capacity", summary="科室每日预留转诊床位", tags=TAGS, query=RangeQuery,
           response=CapacityOut)
async def get_capacity(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    department = await _department_for(principal, request, write=False)
    query = parse_query(request, RangeQuery)
    start = query.date_from or china_today()
    end = query.date_to or start + timedelta(days=13)
    days = await capacity.capacity_between(department.id, start, end)
    return json_response({"department_id": str(department.public_id), "days": days})


@api.route("PUT", "/api/v1/departments/{id}/capacity", summary="发布每日预留转诊床位（管理员、审批人员）", tags=TAGS,
           body=CapacityIn, response=CapacityOut, responses={409: "不能少于已预约数"})
async def put_capacity(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    department = await _department_for(principal, request, write=True)
    body = await parse_body(request, CapacityIn)
    await capacity.set_capacity(department.id, {d.date: d.capacity for d in body.days},
                                actor_staff_id=principal.staff_id)
    dates = sorted(d.date for d in body.days)
    days = await capacity.capacity_between(department.id, dates[0], dates[-1])
    return json_response({"department_id": str(department.public_id), "days": days})


@api.route("GET", "/api/v1/admin/policy", summary="本机构转诊策略", tags=["admin"], response=PolicyModel)
async def get_policy(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_role(Role.ADMIN)
    return json_response(policy_view(await policy_of(principal.institution_id)))


@api.route("PUT", "/api/v1/admin/policy", summary="修改本机构转诊策略（审批环节、审批角色、时限）", tags=["admin"],
           body=PolicyIn, response=PolicyModel)
async def put_policy(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_role(Role.ADMIN)
    body = await parse_body(request, PolicyIn)
    policy = await update_policy(principal.institution_id, body.model_dump(exclude_none=True),
                                 actor_staff_id=principal.staff_id)
    return json_response(policy_view(policy))
