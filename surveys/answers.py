"""A person's own survey invitations and their one answer to each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from accounts.principal import Principal
from directory import cache
from errors import Conflict, Forbidden, InvalidInput, NotFound
from models import Referral, SurveyForm, SurveyInvitation, SurveyResponse
from security.masking import mask_name
from stats import rollup
from surveys.forms import SATISFIED, form_view
from surveys.invitations import OCCASION_NAMES

MAX_PENDING = 50


def _own(principal: Principal) -> Q:
    """The invitations addressed to the caller: as staff, and for every patient they are bound to."""
    mine = Q(id=-1)
    if principal.staff_id is not None:
        mine |= Q(respondent="doctor", staff_id=principal.staff_id)
    if principal.patient_ids:
        mine |= Q(respondent="patient", patient_id__in=list(principal.patient_ids))
    return mine


async def pending(principal: Principal) -> list[SurveyInvitation]:
    if principal.staff_id is None and not principal.patient_ids:
        raise Forbidden("请先完成身份绑定", code="BINDING_REQUIRED")
    return list(await SurveyInvitation.filter(_own(principal), answered_at=None).order_by("-id").limit(MAX_PENDING))


async def own_invitation(principal: Principal, public_id: uuid.UUID) -> SurveyInvitation:
    invitation = await SurveyInvitation.filter(_own(principal), public_id=public_id).first()
    if invitation is None:
        raise NotFound("未找到该问卷", code="SURVEY_NOT_FOUND")
    return invitation


async def invitation_view(invitation: SurveyInvitation, *, with_form: bool = True) -> dict:
    referral = await Referral.get(id=invitation.referral_id)  # type: ignore[attr-defined]
    source = await cache.institution(invitation.source_institution_id)
    target = await cache.institution(invitation.target_institution_id)
    view = {"id": str(invitation.public_id), "occasion": invitation.occasion,
            "occasion_name": OCCASION_NAMES[invitation.occasion], "respondent": invitation.respondent,
            "referral": {"id": str(referral.public_id), "code": referral.code,
                         "patient": mask_name(referral.patient_name), "source": source.name, "target": target.name},
            "invited_on": invitation.invited_day.isoformat(), "answered": invitation.answered_at is not None}
    if with_form:
        view["form"] = form_view(await SurveyForm.get(id=invitation.form_id))  # type: ignore[attr-defined]
    return view


async def answer(principal: Principal, public_id: uuid.UUID, scores: dict[str, int], comment: str) -> SurveyResponse:
    """Record the one answer to an invitation; a second answer is refused (409)."""
    invitation = await own_invitation(principal, public_id)
    form = await SurveyForm.get(id=invitation.form_id)  # type: ignore[attr-defined]
    keys = [item["key"] for item in form.items]
    missing, unknown = [k for k in keys if k not in scores], sorted(set(scores) - set(keys))
    if missing or unknown:
        raise InvalidInput("请为每一项评分（1 至 5 分）", code="INVALID_SURVEY_ANSWER",
                           detail={"missing": missing, "unknown": unknown})
    bad = [k for k, v in scores.items() if not 1 <= v <= 5]
    if bad:
        raise InvalidInput("评分应为 1 至 5 分", code="INVALID_SURVEY_ANSWER", detail={"fields": bad})
    now = datetime.now(UTC)
    async with in_transaction():
        # Conditional: of two answers sent at once exactly one is taken.
        columns = {f"s{i}": scores[key] for i, key in enumerate(keys, start=1)}
        satisfied = scores[keys[0]] >= SATISFIED
        # The figures' copy of the answer rides on this conditional update; the rollup follows in this transaction.
        if not await SurveyInvitation.filter(id=invitation.id, answered_at=None).update(
                answered_at=now, satisfied=satisfied, **columns):
            raise Conflict("该问卷已提交，感谢您的评价", code="SURVEY_ANSWERED")
        before = rollup.invitation_part(invitation)
        for field, value in {"answered_at": now, "satisfied": satisfied, **columns}.items():
            setattr(invitation, field, value)
        await rollup.move(rollup.SURVEYS, before, rollup.invitation_part(invitation))
        return await SurveyResponse.create(invitation_id=invitation.id, form_id=form.id, **columns,
                                           satisfied=satisfied, comment=comment[:500],
                                           account_id=principal.account_id)
