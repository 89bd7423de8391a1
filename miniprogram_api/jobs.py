"""Institution admins look after the background jobs about their referrals: list them (dead by default) and
retry dead ones. What an admin sees is decided in outbox.admin."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from accounts.principal import authenticate
from errors import NotFound
from miniprogram_api.pagination import PageQuery, paginate
from miniprogram_api.routing import Api, json_response, parse_query
from models import Role
from outbox import admin

api = Api()
TAGS = ["admin"]


class JobQuery(PageQuery):
    state: Literal["pending", "running", "done", "dead"] = Field(default="dead",
                                                                 description="任务状态，默认失败（dead）")


class JobReferral(BaseModel):
    id: str
    code: str


class JobOut(BaseModel):
    id: str
    kind: str = Field(description="任务类型，如 his.admit、notify.send")
    state: str
    attempts: int
    last_error: str = Field(description="最近一次失败的原因")
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    referral: JobReferral | None


class JobPage(BaseModel):
    items: list[JobOut]
    next_cursor: str | None


def _job_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise NotFound("未找到该任务", code="JOB_NOT_FOUND")
    return int(raw)


@api.route("GET", "/api/v1/admin/jobs", summary="本机构转诊相关的后台任务（默认只列失败任务）", tags=TAGS,
           query=JobQuery, response=JobPage, responses={403: "仅限机构管理员"})
async def list_jobs(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_role(Role.ADMIN)
    query = parse_query(request, JobQuery)
    rows, cursor = await paginate(admin.jobs_query(state=query.state, institution_id=principal.institution_id),
                                  query)
    referrals = await admin.referrals_of(rows)
    return json_response(JobPage.model_validate(
        {"items": [admin.job_view(job, referrals.get(job.payload.get("referral_id"))) for job in rows],
         "next_cursor": cursor}))


@api.route("POST", "/api/v1/admin/jobs/{id}/retry", summary="重试失败任务", tags=TAGS, response=JobOut,
           responses={403: "仅限机构管理员", 404: "任务不存在或与本机构无关", 409: "任务不是失败状态"})
async def retry_job(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_role(Role.ADMIN)
    job = await admin.retry_job(_job_id(request), institution_id=principal.institution_id,
                                actor_staff_id=principal.staff_id)
    referrals = await admin.referrals_of([job])
    return json_response(JobOut.model_validate(admin.job_view(job, referrals.get(job.payload.get("referral_id")))))
