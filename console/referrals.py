"""Referral worklists and the detail page with the actions the state machine allows the caller (edit, submit,
approve, reject, redirect, cancel, reschedule, complete, resubmit): the same queries, views and commands as the
API's referral routes, with the API's schemas validating the forms."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ValidationError

from appkeys import CIPHER
from console.page import PREFIX, ActionForm, acted, redirect, render, user_of
from directory import cache
from miniprogram_api.referrals import (
    ApproveIn,
    CompleteIn,
    EditReferralIn,
    ListQuery,
    RedirectIn,
    RejectIn,
    RescheduleIn,
    ResubmitIn,
    TransitionIn,
)
from miniprogram_api.routing import validation_error
from models import Department, Institution
from models.referrals import Urgency
from referrals import commands
from referrals.access import approver_here, visible_referral
from referrals.clinical import REJECTION_REASONS
from referrals.queries import Filters, apply_filters, badge_counts, box_query, newest_first
from referrals.state_machine import ACTION_NAMES, STATUS_NAMES, Action
from referrals.views import referral_view, summary_view

routes = web.RouteTableDef()

BOX_NAMES = {"to_approve": "待审批", "incoming": "转入", "outgoing": "转出"}
# Every action a person takes on a referral, as a form of the detail page (check-in is the desk's scan).
FORMS = {
    "edit": ActionForm("保存修改", title="修改草稿"),
    "submit": ActionForm("提交转诊"),
    "approve": ActionForm("审批通过", title="审批通过"),
    "reject": ActionForm("拒绝", title="拒绝", confirm="确定拒绝该转诊单？", danger=True),
    "redirect": ActionForm("改转", title="改转其他机构", confirm="确定将该转诊单改转至所选机构？"),
    "cancel": ActionForm("取消转诊", confirm="确定取消该转诊？", danger=True),
    "reschedule": ActionForm("改约", title="改约入院日期"),
    "complete": ActionForm("完成并回传", title="完成并回传小结"),
    "resubmit": ActionForm("重新发起", title="修改后重新发起"),
}


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


async def targets(*, besides: set[int]) -> list[tuple[Institution, list[Department]]]:
    """The consortium's institutions but `besides`, each with its open departments: where a referral can go."""
    institutions = await Institution.filter(deleted_at=None).exclude(id__in=list(besides) or [0]).order_by("id")
    departments = await Department.filter(institution_id__in=[i.id for i in institutions], deleted_at=None,
                                          is_active=True).order_by("id")
    return [(i, [d for d in departments if d.institution_id == i.id]) for i in institutions  # type: ignore[attr-defined]
            if any(d.institution_id == i.id for d in departments)]  # type: ignore[attr-defined]


@routes.get("/referrals/{id}")
async def detail(request: web.Request) -> web.Response:
    return await _page(request)


async def _page(request: web.Request, *, status: int = 200, **flash) -> web.Response:
    user = user_of(request)
    referral = await visible_referral(user.principal, request.match_info["id"])
    view = await referral_view(referral, user.principal, request.config_dict[CIPHER])
    target = await cache.institution(referral.target_institution_id)  # type: ignore[attr-defined]
    allowed = view["allowed_actions"]
    choices = []
    if "edit" in allowed or "redirect" in allowed:
        # Neither the referring institution nor the current target: the ones a referral can go to instead.
        choices = await targets(besides={referral.source_institution_id, target.id})  # type: ignore[attr-defined]
    return render(request, "referral.html", status=status, r=view,
                  forms=[(a, FORMS[a]) for a in allowed if a in FORMS],
                  others=[ACTION_NAMES[Action(a)] for a in allowed if a not in FORMS and a != Action.CHECK_IN],
                  reasons=REJECTION_REASONS, departments=await own_departments(user.principal.institution_id),
                  target_side=user.principal.institution_id == target.id, targets=choices,
                  urgencies=Urgency.NAMES, **flash)


def _admission(form) -> dict | None:
    if not form.get("admission_date"):
        return None
    return {"date": form.get("admission_date"), "department_id": form.get("department_id") or None,
            "ward": form.get("ward", ""), "bed": form.get("bed", "")}


def _as_admission(body) -> commands.Admission | None:
    a = body.admission
    return commands.Admission(a.date, a.department_id, a.ward, a.bed) if a else None


def _target(value: str | None) -> dict:
    """A "institution id:department id" option of the target select as the schemas' two fields."""
    institution, _, department = (value or "").partition(":")
    return {"institution_id": institution or None, "department_id": department or None}


def _clinical(form) -> dict:
    """The clinical summary fields of the edit and resubmit forms; diagnoses one a line, "code name"."""
    diagnoses = []
    for line in str(form.get("diagnoses", "")).splitlines():
        code, _, name = line.strip().partition(" ")
        if code:
            diagnoses.append({"code": code, "name": name.strip()})
    return {"diagnoses": diagnoses, **{k: form.get(k, "") for k in (
        "chief_complaint", "present_illness", "past_history", "allergies", "treatment", "recent_results",
        "referral_reason", "precautions")}}


@routes.post("/referrals/{id}/{action}")
async def act(request: web.Request) -> web.Response:
    return await acted(request, lambda: _act(request), _page)


async def _act(request: web.Request) -> web.Response:
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
    elif action == "redirect":
        body = form_model(RedirectIn, base | _target(form.get("target")))
        await commands.redirect(principal, rid, expected_version=body.version, comment=body.comment,
                                institution_id=body.institution_id, department_id=body.department_id)
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
    elif action == "edit":
        target = _target(form.get("target"))
        body = form_model(EditReferralIn, {
            "version": base["version"], "urgency": form.get("urgency") or None, "clinical": _clinical(form),
            "contact_phone": form.get("contact_phone") or None,
            "target_institution_id": target["institution_id"], "target_department_id": target["department_id"]})
        await commands.edit_draft(
            principal, request.config_dict[CIPHER], rid, expected_version=body.version, clinical=body.clinical,
            urgency=body.urgency, contact_phone=body.contact_phone, target_institution_id=body.target_institution_id,
            target_department_id=body.target_department_id)
    elif action == "resubmit":
        body = form_model(ResubmitIn, {"submit": form.get("submit") == "true", "clinical": _clinical(form)})
        new = await commands.resubmit(principal, request.config_dict[CIPHER], rid, submit_now=body.submit,
                                      clinical=body.clinical,
                                      expected_version=form_model(TransitionIn, base).version)
        return redirect(f"{PREFIX}/referrals/{new.public_id}", f"已重新发起，新转诊单 {new.code}")
    else:
        raise web.HTTPNotFound()
    return redirect(f"{PREFIX}/referrals/{rid}", "操作已完成")
