"""Who sees a slip: whoever may see its referral (the patient and bound family, staff of the two institutions).
Anyone else gets the same 404 as for a slip that does not exist, so codes cannot be probed."""

from __future__ import annotations

from accounts.principal import Principal
from errors import NotFound
from models import Referral, Slip
from referrals.access import can_view, visible_referral
from slips.lifecycle import current_slip

MAX_CODE_LENGTH = 16


def _not_found() -> NotFound:
    return NotFound("未找到该入院凭条", code="SLIP_NOT_FOUND")


async def slip_of_referral(principal: Principal, referral_public_id: str) -> tuple[Slip, Referral]:
    """The current slip of a referral the caller may see (404 when none was issued yet)."""
    referral = await visible_referral(principal, referral_public_id)
    slip = await current_slip(referral.id)
    if slip is None:
        raise NotFound("该转诊单还没有入院凭条（接收医院审批通过并预约入院后生成）", code="SLIP_NOT_FOUND")
    return slip, referral


async def slip_by_code(code: str) -> tuple[Slip, Referral]:
    """The slip with ``code`` and its referral, whoever asks (callers check access); 404 when there is none."""
    if not code or len(code) > MAX_CODE_LENGTH or not (code.isascii() and code.isalnum()):
        raise _not_found()  # never a query with text no code has (a NUL would even fail in PostgreSQL)
    slip = await Slip.get_or_none(code=code.upper())
    if slip is None:
        raise _not_found()
    return slip, await Referral.get(id=slip.referral_id)  # type: ignore[attr-defined]


async def visible_slip(principal: Principal, code: str) -> tuple[Slip, Referral]:
    """The slip with ``code`` if the caller may see its referral; otherwise 404, exactly as if it did not exist."""
    slip, referral = await slip_by_code(code)
    if not can_view(principal, referral):
        raise _not_found()
    return slip, referral
