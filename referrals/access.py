"""Who may see a referral and how the caller stands to it (sides and effective roles)."""

from __future__ import annotations

import uuid

from tortoise.expressions import Q

from accounts.principal import Principal
from errors import NotFound
from models import Referral, ReferralEvent
from referrals.policy import policy_of
from referrals.state_machine import Action, Side, Status

# Referrals that never left their source: drafts, and drafts cancelled before submission.
NEVER_SUBMITTED = Q(status=Status.DRAFT) | Q(status=Status.CANCELLED, submitted_at__isnull=True)


def submitted(referral: Referral) -> bool:
    """Whether the referral ever left its source institution (the row-level twin of NEVER_SUBMITTED)."""
    return referral.status != Status.DRAFT and not (referral.status == Status.CANCELLED
                                                    and referral.submitted_at is None)


def sides_of(principal: Principal, referral: Referral) -> set[Side]:
    sides: set[Side] = set()
    if principal.staff_id is None:
        return sides
    if principal.staff_id == referral.referrer_id:  # type: ignore[attr-defined]
        sides.add(Side.REFERRER)
    if principal.institution_id == referral.source_institution_id:  # type: ignore[attr-defined]
        sides.add(Side.SOURCE)
    # A draft is the source's working copy: the target stands in it only from submission on, so it neither
    # reads a draft (nor its identity, attachments or orders) nor acts on one.
    if principal.institution_id == referral.target_institution_id and submitted(referral):  # type: ignore[attr-defined]
        sides.add(Side.TARGET)
    return sides


def can_view(principal: Principal, referral: Referral) -> bool:
    """Staff of the source institution, staff of the target once the referral is submitted, and the patient's
    own bound accounts once it is submitted (a draft is the source's working copy). Nobody else."""
    if sides_of(principal, referral):
        return True
    return submitted(referral) and referral.patient_id in principal.patient_ids  # type: ignore[attr-defined]


async def may_view(principal: Principal, referral: Referral) -> bool:
    """`can_view`, and read access for staff of an institution that redirected the referral elsewhere: it had the
    referral on its desk and answers for its decision (they see it; the table gives them no action on it)."""
    if can_view(principal, referral):
        return True
    if principal.staff_id is None or principal.institution_id is None:
        return False
    return await ReferralEvent.filter(referral_id=referral.id, action=str(Action.REDIRECT),
                                      actor_institution_id=principal.institution_id).exists()


async def effective_roles(principal: Principal, referral: Referral, sides: set[Side]) -> set[str]:
    """Staff roles, where "approver" means what the caller's institution policy says: whoever holds one of
    its `approver_roles` approves, and nobody else does (not even the approver role, if the policy left it out)."""
    roles = set(principal.roles) - {"approver"}
    if Side.SOURCE in sides or Side.TARGET in sides:
        if await approver_here(principal):
            roles.add("approver")
    return roles


async def approver_here(principal: Principal) -> bool:
    """Whether the caller approves referrals for their own institution, by its policy's approver roles."""
    if principal.institution_id is None:
        return False
    policy = await policy_of(principal.institution_id)
    return bool(set(principal.roles) & set(policy.approver_roles))


async def visible_referral(principal: Principal, public_id: uuid.UUID | str) -> Referral:
    """The referral if the caller may see it; otherwise 404, exactly as if it did not exist."""
    try:
        key = public_id if isinstance(public_id, uuid.UUID) else uuid.UUID(str(public_id))
    except ValueError:
        raise NotFound("未找到该转诊单", code="REFERRAL_NOT_FOUND") from None
    referral = await Referral.get_or_none(public_id=key).select_related("patient")  # the views show the patient
    if referral is None or not await may_view(principal, referral):
        raise NotFound("未找到该转诊单", code="REFERRAL_NOT_FOUND")
    return referral
