"""Who is behind a role: the WeChat accounts of an institution's approvers and admins, of the referring
doctor, and of everyone bound to the patient. Only people with a WeChat account can be told anything."""

from __future__ import annotations

from models import PatientBinding, Referral, WeChatAccount
from referrals.policy import policy_of


async def _accounts_with_roles(institution_id: int, roles: set[str]) -> list[int]:
    """The WeChat accounts of the institution's active staff holding one of `roles`: one query, joined."""
    # Roles are a JSON list; an institution has tens of staff, so filtering here is simpler than per-database JSON.
    rows = await WeChatAccount.filter(staff__institution_id=institution_id, staff__is_active=True,
                                      staff__deleted_at=None).order_by("id").values_list("id", "staff__roles")
    return [account_id for account_id, staff_roles in rows if roles.intersection(staff_roles or [])]


async def approver_accounts(institution_id: int) -> list[int]:
    """Every approver of the institution: whoever holds one of the roles its policy lets approve
    (the same rule as referrals.access.approver_here)."""
    policy = await policy_of(institution_id)
    return await _accounts_with_roles(institution_id, set(policy.approver_roles or []))


async def admin_accounts(institution_id: int) -> list[int]:
    return await _accounts_with_roles(institution_id, {"admin"})


async def referrer_accounts(referral: Referral) -> list[int]:
    """The referring doctor's accounts, while they are active staff (one query, joined)."""
    return list(await WeChatAccount.filter(staff_id=referral.referrer_id, staff__is_active=True,  # type: ignore[attr-defined]
                                           staff__deleted_at=None).order_by("id").values_list("id", flat=True))


async def patient_accounts(referral: Referral) -> list[int]:
    """Every WeChat account bound to the patient: the patient and the family members who bound them."""
    return list(await PatientBinding.filter(patient_id=referral.patient_id)  # type: ignore[attr-defined]
                .order_by("account_id").values_list("account_id", flat=True))
