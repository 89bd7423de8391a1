"""Referral worklists and the detail page with the actions the state machine allows the caller: the same
queries, views and commands as the API's referral routes, with the API's schemas validating the forms."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ValidationError

from appkeys import CIPHER
from console.page import PREFIX, redirect, render, user_of
from directory import cache
from miniprogram_api.referrals import ApproveIn, CompleteIn, ListQuery, RejectIn, RescheduleIn, TransitionIn
from miniprogram_api.routing import validation_error
from models import Department
from referrals import commands
from referrals.access import approver_here, visible_referral
from referrals.clinical import REJECTION_REASONS
from referrals.queries import Filters, apply_filters, badge_counts, box_query, newest_first
from referrals.state_machine import ACTION_NAMES, STATUS_NAMES, Action
from referrals.views import referral_view, summary_view

routes = web.RouteTableDef()

BOX_NAMES = {"to_approve": "待审批", "incoming": "转入", "outgoing": "转出"}
# Actions the console offers as forms; the others (edit, redirect, resubmit) stay in the mini-program.
FORM_ACTIONS = ("submit", "approve", "reject", "cancel", "reschedule", "complete")


def form_model(model: type[BaseModel], data: dict) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


@routes.get("/referrals")
async def worklist(request: web.Request) -> web.Response:
    user = user_of(request)
    principal = user.principal
    approver = await approver_here(principal)
    boxes = [b for b in BOX_NAMES if b != "to_approve" or approver]
    params = {k: v for k, v in request.query.items() if v != "" and k != "msg"}
    params.setdefault("box", boxes[0])
    query = form_model(ListQuery, params)
    filters = Filters(status=query.status.split(",") if query.status else None, direction=query.direction,
                      date_from=query.date_from, date_to=query.date_to, q=query.q)
    rows, cursor = await newest_first(apply_filters(await box_query(principal, query.box), filters),
                                      query.cursor, query.limit)
    items = [await summary_view(r) for r in rows]
    return render(request, "referrals.html", box=query.box, boxes=[(b, BOX_NAMES[b]) for b in boxes],
                  items=items, next_cursor=cursor, counts=await badge_counts(principal), filters=query,
                  statuses=list(STATUS_NAMES.items()))


async def own_departments(institution_id: int) -> list[Department]:
    return await Department.filter(institution_id=institution_id, deleted_at=None, is_active=True)


@routes.get("/referrals/{id}")
async def detail(request: web.Request) -> web.Response:
    user = user_of(request)
    referral = await visible_referral(user.principal, request.match_info["id"])
    view = await referral_view(referral, user.principal, request.config_dict[CIPHER])
    target = await cache.institution(referral.target_institution_id)  # type: ignore[attr-defined]
    return render(request, "referral.html", r=view, forms=[a for a in view["allowed_actions"] if a in FORM_ACTIONS],
                  others=[ACTION_NAMES[Action(a)] for a in view["allowed_actions"]
                          if a not in FORM_ACTIONS and a != "edit"],
                  reasons=REJECTION_REASONS, departments=await own_departments(user.principal.institution_id),
                  target_side=user.principal.institution_id == target.id)


def _admission(form) -> dict | None:
    if not form.get("admission_date"):
        return None
    return {"date": form.get("admission_date"), "department_id": form.get("department_id") or None,
            "ward": form.get("ward", ""), "bed": form.get("bed", "")}


def _as_admission(body) -> commands.Admission | None:
    a = body.admission
    return commands.Admission(a.date, a.department_id, a.ward, a.bed) if a else None


@routes.post("/referrals/{id}/{action}")
async def act(request: web.Request) -> web.Response:
    user = user_of(request)
    principal = user.principal
    rid, action = request.match_info["id"], request.match_info["action"]
    form = await request.post()
    base = {"version": form.get("version") or None, "comment": form.get("comment", "")}
    if action == "approve":
        body = form_model(ApproveIn, base | {"admission": _admission(form)})
        await commands.approve(principal, rid, expected_version=body.version, comment=body.comment,
                               admission=_as_admission(body))
    elif action == "reschedule":
        body = form_model(RescheduleIn, base | {"admission": _admission(form)})
        await commands.reschedule(principal, rid, expected_version=body.version, comment=body.comment,
                                  admission=_as_admission(body))
    elif action == "reject":
        body = form_model(RejectIn, base | {"reason_code": form.get("reason_code", "")})
        await commands.reject(principal, rid, expected_version=body.version, reason_code=body.reason_code,
                              comment=body.comment)
    elif action == "cancel":
        body = form_model(TransitionIn, base)
        await commands.cancel(principal, rid, expected_version=body.version, comment=body.comment)
    elif action == "submit":
        body = form_model(TransitionIn, base)
        await commands.submit(principal, rid, expected_version=body.version)
    elif action == "complete":
        summary = {k: form.get(k, "") for k in ("diagnosis", "treatment", "results", "recommendations", "mrn")}
        body = form_model(CompleteIn, {"version": base["version"], "summary": summary})
        await commands.complete(principal, rid, expected_version=body.version, summary=body.summary)
    else:
        raise web.HTTPNotFound()
    return redirect(f"{PREFIX}/referrals/{rid}", "操作已完成")
