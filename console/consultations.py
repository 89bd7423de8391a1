"""Consultation worklists and the detail page with the actions the state machine allows the caller: the same
queries, views and commands as the API's consultation routes, with the API's schemas validating the forms."""

from __future__ import annotations

from aiohttp import web

from console.page import PREFIX, redirect, render, user_of
from console.referrals import form_model, own_departments
from consults import commands
from consults.access import visible_consultation
from consults.queries import box_query
from consults.state_machine import ACTION_NAMES, DECLINE_REASONS, RECOMMENDATIONS, STATUS_NAMES, Action
from consults.views import consultation_view, summary_view
from miniprogram_api.consultations import ConcludeIn, DeclineIn, ListQuery
from miniprogram_api.referrals import TransitionIn
from models import Role
from referrals.access import approver_here
from referrals.queries import newest_first

routes = web.RouteTableDef()

BOX_NAMES = {"pool": "待我接诊", "mine": "我参与的", "outgoing": "我发起的", "institution": "本机构收到的"}
# Actions the console offers as forms; inviting colleagues stays in the mini-program.
FORM_ACTIONS = ("accept", "decline", "conclude", "cancel")


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


@routes.get("/consultations/{id}")
async def detail(request: web.Request) -> web.Response:
    user = user_of(request)
    consultation = await visible_consultation(user.principal, request.match_info["id"])
    view = await consultation_view(consultation, user.principal)
    return render(request, "consultation.html", c=view,
                  forms=[a for a in view["allowed_actions"] if a in FORM_ACTIONS],
                  others=[ACTION_NAMES[Action(a)] for a in view["allowed_actions"] if a not in FORM_ACTIONS],
                  reasons=DECLINE_REASONS, recommendations=RECOMMENDATIONS,
                  departments=await own_departments(user.principal.institution_id))


@routes.post("/consultations/{id}/{action}")
async def act(request: web.Request) -> web.Response:
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
