"""Consultation worklists and the detail page with the actions the state machine allows the caller (accept,
decline, invite experts, conclude, cancel): the same queries, views and commands as the API's consultation
routes, with the API's schemas validating the forms."""

from __future__ import annotations

from aiohttp import web

from console.page import PREFIX, ActionForm, acted, redirect, render, user_of
from console.referrals import form_model, own_departments
from consults import commands
from consults.access import invitable_experts, visible_consultation
from consults.queries import box_query
from consults.state_machine import ACTION_NAMES, DECLINE_REASONS, RECOMMENDATIONS, STATUS_NAMES, Action
from consults.views import consultation_view, summary_view
from directory import cache
from miniprogram_api.consultations import ConcludeIn, DeclineIn, InviteIn, ListQuery
from miniprogram_api.referrals import TransitionIn
from models import Consultation, Role
from referrals.access import approver_here
from referrals.queries import newest_first

routes = web.RouteTableDef()

BOX_NAMES = {"pool": "待我接诊", "mine": "我参与的", "outgoing": "我发起的", "institution": "本机构收到的"}
# Every action a person takes on a consultation, as a form of the detail page.
FORMS = {
    "accept": ActionForm("接诊"),
    "decline": ActionForm("婉拒", title="婉拒", confirm="确定婉拒该会诊？", danger=True),
    "invite": ActionForm("邀请", title="邀请专家（多学科会诊）"),
    "conclude": ActionForm("出具意见", title="出具会诊意见"),
    "cancel": ActionForm("取消会诊", confirm="确定取消该会诊？", danger=True),
}


async def _boxes(user) -> list[str]:
    expert = user.has(Role.EXPERT)
    approver = await approver_here(user.principal)
    return [b for b in BOX_NAMES if (b not in ("pool", "mine") or expert) and (b != "institution" or approver)]


@routes.get("/consultations")
async def worklist(request: web.Request) -> web.Response:
    user = user_of(request)
    boxes = await _boxes(user)
    params = {k: v for k, v in request.query.items() if v != "" and k != "msg"}
    params.setdefault("box", boxes[0])
    query = form_model(ListQuery, params)
    rows = await box_query(user.principal, query.box)
    if query.status:
        rows = rows.filter(status__in=query.status.split(","))
    page, cursor = await newest_first(rows, query.cursor, query.limit)
    return render(request, "consultations.html", box=query.box, boxes=[(b, BOX_NAMES[b]) for b in boxes],
                  items=[await summary_view(c) for c in page], next_cursor=cursor, status_filter=query.status or "",
                  statuses=list(STATUS_NAMES.items()))


async def _experts_by_department(consultation: Consultation) -> list[tuple[str, list]]:
    """Whom the invite form offers, grouped under "institution / department"."""
    groups: dict[str, list] = {}
    for expert in await invitable_experts(consultation):
        institution = await cache.institution(expert.institution_id)  # type: ignore[attr-defined]
        department = (await cache.department(expert.department_id)  # type: ignore[attr-defined]
                      if expert.department_id is not None else None)  # type: ignore[attr-defined]
        groups.setdefault(institution.name + (f" / {department.name}" if department else ""), []).append(expert)
    return list(groups.items())


@routes.get("/consultations/{id}")
async def detail(request: web.Request) -> web.Response:
    return await _page(request)


async def _page(request: web.Request, *, status: int = 200, **flash) -> web.Response:
    user = user_of(request)
    consultation = await visible_consultation(user.principal, request.match_info["id"])
    view = await consultation_view(consultation, user.principal)
    allowed = view["allowed_actions"]
    return render(request, "consultation.html", status=status, c=view,
                  forms=[(a, FORMS[a]) for a in allowed if a in FORMS],
                  others=[ACTION_NAMES[Action(a)] for a in allowed if a not in FORMS],
                  reasons=DECLINE_REASONS, recommendations=RECOMMENDATIONS,
                  departments=await own_departments(user.principal.institution_id),
                  experts=await _experts_by_department(consultation) if "invite" in allowed else [], **flash)


@routes.post("/consultations/{id}/{action}")
async def act(request: web.Request) -> web.Response:
    return await acted(request, lambda: _act(request), _page)


async def _act(request: web.Request) -> web.Response:
    principal = user_of(request).principal
    cid, action = request.match_info["id"], request.match_info["action"]
    form = await request.post()
    base = {"version": form.get("version") or None, "comment": form.get("comment", "")}
    if action == "accept":
        body = form_model(TransitionIn, base)
        await commands.accept(principal, cid, expected_version=body.version)
    elif action == "decline":
        body = form_model(DeclineIn, base | {"reason_code": form.get("reason_code", "")})
        await commands.decline(principal, cid, expected_version=body.version, reason_code=body.reason_code,
                               comment=body.comment)
    elif action == "invite":
        body = form_model(InviteIn, base | {"expert_ids": form.getall("expert_ids", [])})
        await commands.invite(principal, cid, expected_version=body.version, expert_ids=body.expert_ids)
    elif action == "conclude":
        opinion = {"recommendation": form.get("recommendation", ""), "advice": form.get("advice", ""),
                   "suggested_department_id": form.get("suggested_department_id") or None}
        body = form_model(ConcludeIn, base | {"opinion": opinion})
        await commands.conclude(principal, cid, expected_version=body.version, opinion=commands.Opinion(
            body.opinion.recommendation, body.opinion.advice, body.opinion.suggested_department_id))
    elif action == "cancel":
        body = form_model(TransitionIn, base)
        await commands.cancel(principal, cid, expected_version=body.version, comment=body.comment)
    else:
        raise web.HTTPNotFound()
    return redirect(f"{PREFIX}/consultations/{cid}", "操作已完成")
