"""What the admission desk expects: the patients booked into its institution for given days, and the no-shows
(slips that expired) of the past days. Names are masked, as on every staff list."""

from __future__ import annotations

from datetime import date, timedelta

from directory import cache
from models import Referral, Slip
from referrals.state_machine import STATUS_NAMES, Status
from security.masking import mask_name
from slips.views import STATE_NAMES, effective_state
from timeutil import china_today

NO_SHOW_DAYS = 7


async def _rows(referrals: list[Referral]) -> list[dict]:
    slips: dict[int, Slip] = {}
    if referrals:
        for slip in await Slip.filter(referral_id__in=[r.id for r in referrals]).order_by("id"):
            slips[slip.referral_id] = slip  # type: ignore[attr-defined]  # the latest slip of each
    rows = []
    for r in referrals:
        department = (await cache.department(r.admission_department_id)  # type: ignore[attr-defined]
                      if r.admission_department_id else None)  # type: ignore[attr-defined]
        slip = slips.get(r.id)
        rows.append({
            "id": str(r.public_id), "code": r.code, "patient_name": mask_name(r.patient_name),
            "admission_date": r.admission_date, "department": department.name if department else "",
            "ward": r.ward, "bed": r.bed, "status": str(r.status), "status_name": STATUS_NAMES[r.status],
            "slip_code": slip.code if slip else "",
            "slip_status": STATE_NAMES[effective_state(slip, r)] if slip else "",
            "checked_in_at": slip.checked_in_at if slip else r.admitted_at,
        })
    return rows


async def expected_arrivals(institution_id: int, day: date) -> list[dict]:
    """Patients booked for `day` (China's) at the institution: still to come, or already checked in."""
    referrals = await Referral.filter(target_institution_id=institution_id, admission_date=day,
                                      status__in=[Status.SCHEDULED, Status.ADMITTED, Status.COMPLETED]
                                      ).order_by("admission_department_id", "id")
    return await _rows(referrals)


async def recent_no_shows(institution_id: int, *, days: int = NO_SHOW_DAYS) -> list[dict]:
    """Booked patients who did not come in the past `days` days (their referral expired)."""
    today = china_today()
    referrals = await Referral.filter(target_institution_id=institution_id, status=Status.EXPIRED,
                                      admission_date__gte=today - timedelta(days=days),
                                      admission_date__lt=today).order_by("-admission_date", "id")
    return await _rows(referrals)
