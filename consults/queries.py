"""Consultation worklists: what I asked, the pool I am in, what I take part in, what my institution received."""

from __future__ import annotations

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from accounts.principal import Principal
from consults.state_machine import OPEN, Status
from errors import Forbidden, InvalidInput
from models import Consultation, ConsultationMember
from referrals.access import approver_here

BOXES = ("outgoing", "pool", "mine", "institution")


async def box_query(principal: Principal, box: str) -> QuerySet:
    if box not in BOXES:
        raise InvalidInput("未知的列表类型", code="INVALID_BOX", detail={"allowed": list(BOXES)})
    principal.require_staff()
    if box == "outgoing":
        return Consultation.filter(requester_id=principal.staff_id)
    if box == "pool":
        # Requests waiting for me: addressed to me by name, or to my department's pool while I am its expert.
        mine = Q(addressed_expert_id=principal.staff_id)
        if "expert" in principal.roles and principal.department_id is not None:
            mine |= Q(addressed_expert_id=None, target_institution_id=principal.institution_id,
                      target_department_id=principal.department_id)
        return Consultation.filter(mine, status=Status.REQUESTED)
    if box == "mine":
        invited = await ConsultationMember.filter(staff_id=principal.staff_id).values_list("consultation_id",
                                                                                          flat=True)
        return Consultation.filter(Q(expert_id=principal.staff_id) | Q(id__in=list(invited) or [0]))
    if not await approver_here(principal):
        raise Forbidden("仅审批人员可查看本机构收到的会诊", code="ROLE_REQUIRED")
    return Consultation.filter(target_institution_id=principal.institution_id)


async def open_for(principal: Principal) -> list[Consultation]:
    """Every open consultation the caller takes part in (asked, accepted or invited), newest first."""
    invited = await ConsultationMember.filter(staff_id=principal.staff_id).values_list("consultation_id", flat=True)
    return await Consultation.filter(Q(requester_id=principal.staff_id) | Q(expert_id=principal.staff_id)
                                     | Q(id__in=list(invited) or [0]),
                                     status__in=[str(s) for s in OPEN]).order_by("-id")
