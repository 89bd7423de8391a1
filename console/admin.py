"""Institution admin pages: staff and invitations, departments, the reserved-bed calendar, the policy, failed
background jobs and the audit log. Each form is validated by the API's own schema and handed to the domain
function the API calls, scoped to the admin's institution in the same way."""

from __future__ import annotations

import asyncio
import calendar
import uuid
from datetime import date, datetime, time, timedelta

from aiohttp import web
from pydantic import BaseModel, ValidationError

from accounts.invitations import create_invitation
from appkeys import SETTINGS
from console.login import inline_svg
from console.page import PREFIX, redirect, render, user_of
from directory import admin as directory_admin
from directory.views import staff_admin_view
from miniprogram_api.admin import DepartmentIn, DepartmentPatch, InvitationIn, StaffPatch
from miniprogram_api.capacity import CapacityIn, PolicyIn
from miniprogram_api.routing import validation_error
from models import Department, Role, Staff, WeChatAccount
from outbox import admin as outbox_admin
from referrals import capacity
from referrals.policy import policy_of, policy_view, update_policy
from security import audit
from timeutil import CHINA_TZ, china_today

routes = web.RouteTableDef()
ROLES = [r.value for r in Role]
WEEKDAYS = "一二三四五六日"


def _valid(model: type[BaseModel], data: dict) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def _blank_none(value) -> str | None:
    return str(value) if value not in (None, "") else None


async def _departments(institution_id: int, *, active_only: bool = False) -> list[Department]:
    query = Department.filter(institution_id=institution_id, deleted_at=None)
    return await (query.filter(is_active=True) if active_only else query)


# ------------------------------------------------------------------------------------------------ staff

@routes.get("/admin/staff")
async def staff_page(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    institution_id = user.principal.institution_id
    departments = await _departments(institution_id)
    by_id = {d.id: d for d in departments}
    bound = set(await WeChatAccount.filter(staff__institution_id=institution_id).values_list("staff_id", flat=True))
    rows = [staff_admin_view(s, by_id.get(s.department_id), s.id in bound)  # type: ignore[attr-defined]
            for s in await Staff.filter(institution_id=institution_id, deleted_at=None)]
    return render(request, "admin_staff.html", staff=rows, departments=departments, roles=ROLES)


@routes.post("/admin/staff/{id}")
async def staff_change(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    form = await request.post()
    patch = {"roles": form.getall("roles", []), "department_id": _blank_none(form.get("department_id")),
             "title": form.get("title", "")}
    if "is_active" in form:
        patch["is_active"] = form["is_active"] == "true"
    body = _valid(StaffPatch, patch)
    await directory_admin.update_staff(user.principal, uuid.UUID(request.match_info["id"]), roles=body.roles,
                                       department_id=body.department_id, is_active=body.is_active,
                                       title=body.title)
    return redirect(PREFIX + "/admin/staff", "已保存")


@routes.post("/admin/invitations")
async def invite(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    form = await request.post()
    body = _valid(InvitationIn, {"name": form.get("name", ""), "roles": form.getall("roles", []),
                                 "department_id": _blank_none(form.get("department_id"))})
    invitation, token = await create_invitation(user.principal, name=body.name, roles=list(body.roles),
                                                department_id=body.department_id,
                                                ttl=request.config_dict[SETTINGS].invitation_ttl)
    qr = await asyncio.get_running_loop().run_in_executor(None, inline_svg, token)
    department = (await Department.get(id=invitation.department_id)  # type: ignore[attr-defined]
                  if invitation.department_id else None)  # type: ignore[attr-defined]
    return render(request, "admin_invitation.html", invitation=invitation, token=token, qr_svg=qr,
                  department=department)


# ------------------------------------------------------------------------------------------ departments

@routes.get("/admin/departments")
async def departments_page(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    return render(request, "admin_departments.html", departments=await _departments(user.principal.institution_id))


@routes.post("/admin/departments")
async def department_add(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    form = await request.post()
    body = _valid(DepartmentIn, {k: form.get(k, "") for k in ("code", "name", "ward", "phone")})
    await directory_admin.create_department(user.principal, **body.model_dump())
    return redirect(PREFIX + "/admin/departments", f"已新增科室 {body.name}")


@routes.post("/admin/departments/{id}")
async def department_change(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    form = await request.post()
    body = _valid(DepartmentPatch, {"name": form.get("name"), "ward": form.get("ward", ""),
                                    "phone": form.get("phone", ""), "is_active": form.get("is_active") == "true"})
    await directory_admin.update_department(user.principal, uuid.UUID(request.match_info["id"]),
                                            body.model_dump(exclude_none=True))
    return redirect(PREFIX + "/admin/departments", "已保存")


# ------------------------------------------------------------------------------------ reserved beds

def _month(raw: str | None) -> date:
    try:
        year, month = (int(p) for p in (raw or "").split("-"))
        return date(year, month, 1)
    except ValueError:
        return china_today().replace(day=1)


@routes.get("/admin/beds")
async def beds_page(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN, Role.APPROVER)
    departments = await _departments(user.principal.institution_id, active_only=True)
    if not departments:
        return render(request, "error.html", title="没有科室", message="本机构还没有启用的科室。")
    chosen = next((d for d in departments if str(d.public_id) == request.query.get("department")), departments[0])
    await capacity.department_to_publish(user.principal, chosen.public_id)  # admins and approvers only
    first = _month(request.query.get("month"))
    last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
    days = await capacity.capacity_between(chosen.id, first, last)
    today = china_today()
    cells = [None] * first.weekday() + [d | {"day": date.fromisoformat(d["date"])} for d in days]
    previous = (first - timedelta(days=1)).replace(day=1)
    following = last + timedelta(days=1)
    return render(request, "admin_beds.html", departments=departments, department=chosen, month=first,
                  cells=cells, today=today, weekdays=WEEKDAYS, previous=previous.strftime("%Y-%m"),
                  following=following.strftime("%Y-%m"),
                  totals={"capacity": sum(d["capacity"] for d in days), "booked": sum(d["booked"] for d in days)})


@routes.post("/admin/beds")
async def beds_publish(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN, Role.APPROVER)
    form = await request.post()
    department = await capacity.department_to_publish(user.principal, uuid.UUID(str(form.get("department_id"))))
    start = _valid_date(form.get("from"))
    end = _valid_date(form.get("to") or form.get("from"))
    days = [{"date": d.isoformat(), "capacity": form.get("capacity", "")} for d in capacity.days_between(start, end)]
    body = _valid(CapacityIn, {"days": days})
    await capacity.set_capacity(department.id, {d.date: d.capacity for d in body.days},
                                actor_staff_id=user.principal.staff_id)
    month = start.strftime("%Y-%m")
    label = start.isoformat() if start == end else f"{start.isoformat()} 至 {end.isoformat()}"
    return redirect(f"{PREFIX}/admin/beds?department={department.public_id}&month={month}",
                    f"已发布 {label} 每日 {body.days[0].capacity} 张预留床位")


def _valid_date(raw) -> date:
    class _Day(BaseModel):
        day: date

    return _valid(_Day, {"day": raw}).day  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------- policy

@routes.get("/admin/policy")
async def policy_page(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    return render(request, "admin_policy.html", policy=policy_view(await policy_of(user.principal.institution_id)),
                  roles=ROLES)


@routes.post("/admin/policy")
async def policy_save(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    form = await request.post()
    body = _valid(PolicyIn, {
        **{f"source_approval_{d}": f"source_approval_{d}" in form for d in ("up", "down", "lateral")},
        "approver_roles": form.getall("approver_roles", []),
        "deadline_hours": {k: form.get(f"deadline_{k}", "") for k in ("routine", "urgent", "emergency")},
        "slip_grace_hours": form.get("slip_grace_hours", ""), "what_to_bring": form.get("what_to_bring", "")})
    await update_policy(user.principal.institution_id, body.model_dump(exclude_none=True),
                        actor_staff_id=user.principal.staff_id)
    return redirect(PREFIX + "/admin/policy", "转诊策略已保存，对此后新建的转诊单生效")


# ------------------------------------------------------------------------------------------------- jobs

@routes.get("/admin/jobs")
async def jobs_page(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    state = request.query.get("state", "dead")
    if state not in {str(s) for s in outbox_admin.STATES}:
        state = "dead"
    rows = await outbox_admin.jobs_query(state=state, institution_id=user.principal.institution_id) \
        .order_by("-id").limit(200)
    referrals = await outbox_admin.referrals_of(rows)
    jobs = [outbox_admin.job_view(job, referrals.get(job.payload.get("referral_id"))) for job in rows]
    return render(request, "admin_jobs.html", jobs=jobs, state=state)


@routes.post("/admin/jobs/{id}/retry")
async def job_retry(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    await outbox_admin.retry_job(int(raw), institution_id=user.principal.institution_id,
                                 actor_staff_id=user.principal.staff_id)
    return redirect(PREFIX + "/admin/jobs", f"任务 {raw} 已重新排队")


# ------------------------------------------------------------------------------------------------ audit

def _day_bound(raw: str | None, *, end: bool) -> datetime | None:
    if not raw:
        return None
    day = _valid_date(raw) + (timedelta(days=1) if end else timedelta())
    return datetime.combine(day, time.min, CHINA_TZ)


@routes.get("/admin/audit")
async def audit_page(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMIN)
    action = request.query.get("action", "").strip()[:64]
    events = await audit.events_query(institution_id=user.principal.institution_id, action=action or None,
                                      since=_day_bound(request.query.get("from"), end=False),
                                      until=_day_bound(request.query.get("to"), end=True)).limit(200)
    actors = {s.id: s.name for s in await Staff.filter(id__in={e.actor_staff_id for e in events if e.actor_staff_id})}
    return render(request, "admin_audit.html", events=events, actors=actors, check=None,
                  filters={k: request.query.get(k, "") for k in ("action", "from", "to")})


@routes.post("/admin/audit/verify")
async def audit_verify(request: web.Request) -> web.Response:
    user_of(request, Role.ADMIN)
    check = await audit.verify()
    message = (f"审计日志完整：共 {check.events} 条记录，哈希链校验通过" if check.valid
               else f"审计日志已被篡改：第 {check.broken_at} 条记录校验失败")
    return redirect(PREFIX + "/admin/audit", message, bad=not check.valid)
