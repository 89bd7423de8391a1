"""Institution policies: does the source approve, who approves, how fast (data, editable by the admin)."""

from __future__ import annotations

from datetime import datetime, timedelta

from directory import cache
from models import InstitutionPolicy
from referrals.state_machine import Direction
from security.audit import audited

# What a patient brings to the admission desk, unless the institution says otherwise.
DEFAULT_WHAT_TO_BRING = "身份证、医保卡（或医保电子凭证）、既往病历和检查报告、正在服用的药物"


async def policy_of(institution_id: int) -> InstitutionPolicy:
    """The institution's policy as this process has it (shared: read it, never change it)."""
    return await cache.policy(institution_id)


def bring_of(policy: InstitutionPolicy) -> str:
    """What patients bring to the institution's admission desk: its own text, or the platform's."""
    return policy.what_to_bring or DEFAULT_WHAT_TO_BRING


async def what_to_bring(institution_id: int) -> str:
    return bring_of(await policy_of(institution_id))


def needs_source_approval(policy: InstitutionPolicy, direction: Direction) -> bool:
    """Up-referrals pass the source's approval by default; down-referrals skip it (下转审批流程相对简化)."""
    return {Direction.UP: policy.source_approval_up, Direction.DOWN: policy.source_approval_down,
            Direction.LATERAL: policy.source_approval_lateral}[direction]


def deadline(policy: InstitutionPolicy, urgency: str, started_at: datetime) -> datetime:
    hours = float(policy.deadline_hours.get(urgency, 48))
    return started_at + timedelta(hours=hours)


def policy_view(policy: InstitutionPolicy) -> dict:
    return {"source_approval_up": policy.source_approval_up, "source_approval_down": policy.source_approval_down,
            "source_approval_lateral": policy.source_approval_lateral, "approver_roles": policy.approver_roles,
            "deadline_hours": policy.deadline_hours, "slip_grace_hours": policy.slip_grace_hours,
            "early_arrival_days": policy.early_arrival_days, "what_to_bring": bring_of(policy),
            "consult_accept_hours": policy.consult_accept_hours,
            "consult_opinion_is_review": policy.consult_opinion_is_review}


async def update_policy(institution_id: int, changes: dict, *, actor_staff_id: int | None = None) -> InstitutionPolicy:
    """Applies to referrals created from now on; referrals under way keep the approval path they started with."""
    async with audited("admin.policy_updated", "institution_policy", str(institution_id),
                       actor_staff_id=actor_staff_id, institution_id=institution_id) as detail:
        policy, _ = await InstitutionPolicy.get_or_create(institution_id=institution_id)  # our own copy to change
        policy.update_from_dict(changes)
        await policy.save()
        detail["changes"] = changes
    return policy
