"""How a slip looks to the patient and to staff: what to bring where and when, and the token while it is valid."""

from __future__ import annotations

from directory import cache
from models import Department, Referral, Slip, SlipState, Staff
from referrals.state_machine import Status
from security.masking import mask_name
from slips.image_urls import ImageLinks
from slips.lifecycle import REVOKE_REASONS

STATE_NAMES = {SlipState.ACTIVE: "有效", SlipState.USED: "已入院", SlipState.REVOKED: "已作废",
               SlipState.EXPIRED: "已过期"}


def effective_state(slip: Slip, referral: Referral) -> str:
    """The slip's state, following its referral when the referral was closed by another path."""
    if slip.state != SlipState.ACTIVE or referral.status == Status.SCHEDULED:
        return slip.state
    if referral.status in (Status.ADMITTED, Status.COMPLETED):
        return SlipState.USED
    if referral.status == Status.EXPIRED:
        return SlipState.EXPIRED
    return SlipState.REVOKED


def summary_view(slip: Slip, referral: Referral, links: ImageLinks) -> dict:
    """The slip on a worklist row of the patient's own referrals."""
    state = effective_state(slip, referral)
    urls = links.urls(slip.code) if state == SlipState.ACTIVE else {}
    return {"code": slip.code, "status": state, "status_name": STATE_NAMES[state],
            "scheduled_date": slip.scheduled_date.isoformat(), "expires_at": slip.expires_at,
            "qr_png_url": urls.get("qr_png_url")}


async def slip_view(slip: Slip, referral: Referral, *, token: str | None, links: ImageLinks) -> dict:
    state = effective_state(slip, referral)
    institution = await cache.institution(referral.target_institution_id)  # type: ignore[attr-defined]
    department = await Department.get_or_none(id=slip.department_id) if slip.department_id else None  # type: ignore[attr-defined]
    clerk = await Staff.get_or_none(id=slip.checked_in_by_id) if slip.checked_in_by_id else None  # type: ignore[attr-defined]
    active = state == SlipState.ACTIVE
    urls = links.urls(slip.code) if active else {}
    return {
        "code": slip.code, "status": state, "status_name": STATE_NAMES[state],
        "referral_id": str(referral.public_id), "referral_code": referral.code,
        "patient_name": mask_name(referral.patient_name),
        "institution": {"id": str(institution.public_id), "code": institution.code, "name": institution.name,
                        "address": institution.address, "phone": institution.phone},
        "scheduled_date": slip.scheduled_date.isoformat(),
        "department": ({"id": str(department.public_id), "code": department.code, "name": department.name}
                       if department else None),
        "ward": slip.ward, "bed": slip.bed, "what_to_bring": slip.what_to_bring,
        "certificate_no": referral.admission_certificate_no or slip.certificate_no or None,
        "issued_at": slip.created_at, "expires_at": slip.expires_at,
        "checked_in_at": slip.checked_in_at, "checked_in_by": clerk.name if clerk else None,
        "revoked_at": slip.revoked_at,
        "revoked_reason": REVOKE_REASONS.get(slip.revoked_reason) if slip.state == SlipState.REVOKED else None,
        "token": token if active else None,
        "qr_png_url": urls.get("qr_png_url"), "qr_svg_url": urls.get("qr_svg_url"),
        "wxacode_url": urls.get("wxacode_url"),
    }


async def summaries_for(referrals: list[Referral], links: ImageLinks) -> dict[int, dict]:
    """The current slip of each referral that has one, in one query (for worklists)."""
    ids = [r.id for r in referrals]
    if not ids:
        return {}
    by_id = {r.id: r for r in referrals}
    latest: dict[int, Slip] = {}
    for slip in await Slip.filter(referral_id__in=ids).order_by("id"):
        latest[slip.referral_id] = slip  # type: ignore[attr-defined]
    return {rid: summary_view(slip, by_id[rid], links) for rid, slip in latest.items()}


def waiting_text(seconds: float) -> str:
    """A waiting time as people say it: 3天4小时, 5小时12分钟, 8分钟."""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时" if hours else f"{days}天"
    if hours:
        return f"{hours}小时{mins}分钟" if mins else f"{hours}小时"
    return f"{mins}分钟"


async def check_in_view(slip: Slip, referral: Referral, clerk_name: str, waiting_seconds: float | None) -> dict:
    department = await Department.get_or_none(id=slip.department_id) if slip.department_id else None  # type: ignore[attr-defined]
    return {
        "referral_id": str(referral.public_id), "referral_code": referral.code, "slip_code": slip.code,
        "status": str(referral.status), "patient_name": mask_name(referral.patient_name),
        "scheduled_date": slip.scheduled_date.isoformat(), "department": department.name if department else "",
        "ward": slip.ward, "bed": slip.bed,
        "certificate_no": referral.admission_certificate_no or slip.certificate_no or None,
        "checked_in_at": slip.checked_in_at, "checked_in_by": clerk_name,
        "waiting_seconds": int(waiting_seconds) if waiting_seconds is not None else None,
        "waiting_text": waiting_text(waiting_seconds) if waiting_seconds is not None else None,
    }
