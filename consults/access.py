"""Who may see a consultation and how the caller stands to it (sides)."""

from __future__ import annotations

import uuid

from accounts.principal import Principal
from consults.state_machine import Side
from errors import NotFound
from models import Consultation, ConsultationMember, Staff
from referrals.access import approver_here


def in_pool(principal: Principal, consultation: Consultation) -> bool:
    """The named expert, or, for a department's pool, any expert of that department."""
    if principal.staff_id is None:
        return False
    if consultation.addressed_expert_id is not None:  # type: ignore[attr-defined]
        return principal.staff_id == consultation.addressed_expert_id  # type: ignore[attr-defined]
    return ("expert" in principal.roles
            and principal.institution_id == consultation.target_institution_id  # type: ignore[attr-defined]
            and principal.department_id == consultation.target_department_id)  # type: ignore[attr-defined]


async def sides_of(principal: Principal, consultation: Consultation) -> set[Side]:
    sides: set[Side] = set()
    if principal.staff_id is None:
        return sides
    if principal.staff_id == consultation.requester_id:  # type: ignore[attr-defined]
        sides.add(Side.REQUESTER)
    if in_pool(principal, consultation):
        sides.add(Side.POOL)
    if principal.staff_id == consultation.expert_id:  # type: ignore[attr-defined]
        sides.add(Side.EXPERT)
    if await ConsultationMember.filter(consultation_id=consultation.id, staff_id=principal.staff_id).exists():
        sides.add(Side.INVITED)
    return sides


async def can_view(principal: Principal, consultation: Consultation, sides: set[Side]) -> bool:
    """Its parties, and the approvers of the addressed institution (unanswered requests escalate to them)."""
    if sides:
        return True
    return (principal.institution_id == consultation.target_institution_id  # type: ignore[attr-defined]
            and await approver_here(principal))


def public_uuid(value: uuid.UUID | str, missing: NotFound) -> uuid.UUID:
    """A public id from a path, or `missing` (404) when it is not a UUID at all."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise missing from None


async def visible_consultation(principal: Principal, public_id: uuid.UUID | str) -> Consultation:
    """The consultation if the caller may see it; otherwise 404, exactly as if it did not exist."""
    key = public_uuid(public_id, NotFound("未找到该会诊", code="CONSULTATION_NOT_FOUND"))
    consultation = await Consultation.get_or_none(public_id=key)
    if consultation is None or not await can_view(principal, consultation, await sides_of(principal, consultation)):
        raise NotFound("未找到该会诊", code="CONSULTATION_NOT_FOUND")
    return consultation


async def pool_staff(consultation: Consultation) -> list[int]:
    """The staff a request is addressed to: the named expert, or the department's active experts."""
    if consultation.addressed_expert_id is not None:  # type: ignore[attr-defined]
        return [consultation.addressed_expert_id]  # type: ignore[attr-defined]
    staff = await Staff.filter(institution_id=consultation.target_institution_id,  # type: ignore[attr-defined]
                               department_id=consultation.target_department_id,  # type: ignore[attr-defined]
                               is_active=True, deleted_at=None).only("id", "roles")
    return [s.id for s in staff if "expert" in (s.roles or [])]


async def party_staff(consultation: Consultation) -> list[int]:
    """Who takes part once it is accepted: the requester, the accepting expert and the invited experts."""
    members = await ConsultationMember.filter(consultation_id=consultation.id).values_list("staff_id", flat=True)
    ids = [consultation.requester_id, consultation.expert_id, *members]  # type: ignore[attr-defined]
    return sorted({i for i in ids if i is not None})


async def invitable_experts(consultation: Consultation) -> list[Staff]:
    """The consortium's active experts not yet taking part: whom an accepted consultation can invite."""
    taken = set(await party_staff(consultation))
    staff = await Staff.filter(is_active=True, deleted_at=None).exclude(id__in=list(taken) or [0]).order_by(
        "institution_id", "department_id", "id")
    return [s for s in staff if s.has_role("expert")]
