"""The admission desk scans a slip: the patient is admitted once, never twice, and not before the slip's day.

Order of checks: the clerk's role, the token (shape, key, signature, this hospital, expiry), the slip's state,
then its first valid day (the scheduled day in China, earlier by the institution's ``early_arrival_days``).
Admission is ``referrals.commands.check_in`` (the referral's version makes exactly one of any number of
concurrent scans win) and the slip is marked used in the same transaction; every loser is told who checked
the patient in and when, and nothing changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tortoise.transactions import in_transaction

from accounts.principal import Principal
from directory import cache
from errors import Conflict, DomainError, Gone, InvalidInput, NotFound
from models import Institution, Referral, ReferralEvent, Slip, SlipState, Staff
from qr import slip_token
from qr.slip_token import SlipTokenError
from referrals import commands
from referrals.policy import policy_of
from referrals.state_machine import Status
from slips import keys
from slips.lifecycle import REVOKE_REASONS
from timeutil import api_time, china_time, china_today, utcnow

ATTEMPTS = 3  # a scan that loses to an unrelated change of the referral (not another scan) tries again


@dataclass(frozen=True)
class CheckedIn:
    slip: Slip
    referral: Referral
    clerk_name: str
    waiting: timedelta | None  # submit → admitted, what the waiting-time figures are made of


def _when(at: datetime) -> str:
    """HH:MM in China, with the date when it was not today."""
    local = china_time(at)
    return local.strftime("%H:%M") if local.date() == china_today() else f"{local.month}月{local.day}日 {local:%H:%M}"


async def _token_refusal(exc: SlipTokenError) -> DomainError:
    if exc.code == slip_token.OTHER_INSTITUTION and exc.claims is not None:
        owner = await Institution.get_or_none(code=exc.claims.institution)
        name = owner.name if owner else exc.claims.institution
        return InvalidInput(f"该入院凭条属于{name}，不能在本院办理入院，请患者前往{name}", code=exc.code,
                            detail={"institution_code": exc.claims.institution, "institution_name": name})
    if exc.code == slip_token.EXPIRED and exc.claims is not None:
        expired = datetime.fromtimestamp(exc.claims.expires_at, UTC)
        return Gone(f"该入院凭条已于{_when(expired)}过期，请患者联系转诊医生重新预约", code=exc.code,
                    detail={"expired_at": api_time(expired)})
    return InvalidInput(exc.message, code=exc.code)


async def already_checked_in(slip: Slip, referral: Referral) -> Conflict:
    if slip.state != SlipState.USED:
        # Read before the winning scan committed; slip and referral commit together, so look again.
        slip = await Slip.get(id=slip.id)
    at, name = slip.checked_in_at, None
    if slip.checked_in_by_id:  # type: ignore[attr-defined]
        staff = await Staff.get_or_none(id=slip.checked_in_by_id)  # type: ignore[attr-defined]
        name = staff.name if staff else None
    if at is None or name is None:
        # Admitted by another path than this slip: the timeline says who and when.
        event = await ReferralEvent.filter(referral_id=referral.id, action="check_in").order_by("-seq").first()
        at = at or (event.at if event else referral.admitted_at) or utcnow()
        name = name or (event.actor_name if event else None)
    name = name or "住院处"
    return Conflict(f"该患者已于{_when(at)}由{name}办理入院登记，无需重复办理", code="SLIP_ALREADY_CHECKED_IN",
                    detail={"checked_in_at": api_time(at), "checked_in_by": name,
                            "referral_id": str(referral.public_id), "referral_code": referral.code,
                            "slip_code": slip.code})


async def _refuse_by_state(slip: Slip, referral: Referral) -> None:
    """Raise the refusal the slip's (or its referral's) state calls for; return when it can be checked in."""
    if slip.state == SlipState.USED or referral.status in (Status.ADMITTED, Status.COMPLETED):
        raise await already_checked_in(slip, referral)
    if slip.state == SlipState.EXPIRED or referral.status == Status.EXPIRED:
        raise Gone(f"该入院凭条已于{_when(slip.expires_at)}过期，患者逾期未到院，请联系转诊医生重新预约",
                   code=slip_token.EXPIRED, detail={"expired_at": api_time(slip.expires_at)})
    if slip.state == SlipState.REVOKED or referral.status != Status.SCHEDULED:
        reason = REVOKE_REASONS.get(slip.revoked_reason, "转诊已终止")
        raise Gone(f"该入院凭条已作废（{reason}），不能办理入院", code="SLIP_REVOKED",
                   detail={"reason": slip.revoked_reason or str(referral.status)})


def valid_from(slip: Slip, early_arrival_days: int) -> date:
    """The first China day the desk accepts the slip: the scheduled day, or as many days earlier as the
    institution's policy allows."""
    return slip.scheduled_date - timedelta(days=max(early_arrival_days, 0))


async def _refuse_too_early(slip: Slip, institution_id: int) -> None:
    first = valid_from(slip, (await policy_of(institution_id)).early_arrival_days)
    today = china_today()
    if today < first:
        scheduled = slip.scheduled_date
        allowed = "" if first == scheduled else f"，本院允许提前至{first.month}月{first.day}日办理"
        raise Conflict(f"该入院凭条预约的入院日期为{scheduled.month}月{scheduled.day}日{allowed}，"
                       f"今天（{today.month}月{today.day}日）还不能办理入院，请患者按预约日期到院",
                       code="SLIP_NOT_YET_VALID",
                       detail={"scheduled_date": scheduled.isoformat(), "valid_from": first.isoformat(),
                               "today": today.isoformat()})


async def check_in(principal: Principal, token: str) -> CheckedIn:
    """Admit the patient named by a scanned slip token, as an admission clerk of the target institution."""
    principal.require_role("admission_clerk")
    institution = await cache.institution(principal.institution_id)
    try:
        claims = slip_token.verify(token, await keys.public_key(slip_token.token_kid(token)), institution.code)
    except SlipTokenError as exc:
        if exc.code == slip_token.EXPIRED and exc.claims is not None:
            # A patient admitted earlier shows the old slip again: "already checked in" says more than "expired".
            used = await Slip.get_or_none(code=exc.claims.code, state=SlipState.USED)
            if used is not None:
                raise await already_checked_in(used, await Referral.get(id=used.referral_id)) from None  # type: ignore[attr-defined]
        raise await _token_refusal(exc) from None
    slip = await Slip.get_or_none(code=claims.code)
    if slip is None:
        raise NotFound("未找到该入院凭条", code="SLIP_NOT_FOUND")
    referral = await Referral.get(id=slip.referral_id)  # type: ignore[attr-defined]
    await _refuse_by_state(slip, referral)
    await _refuse_too_early(slip, institution.id)
    for attempt in range(ATTEMPTS):
        try:
            async with in_transaction():
                referral = await commands.check_in(principal, referral.id,
                                                   comment=f"扫描入院凭条 {slip.code} 办理入院")
                marked = await Slip.filter(id=slip.id, state=SlipState.ACTIVE).update(
                    state=SlipState.USED, checked_in_at=referral.admitted_at, checked_in_by_id=principal.staff_id,
                    certificate_no=referral.admission_certificate_no)
                if not marked:
                    raise Conflict("入院凭条状态已变化", code="SLIP_STATE_CHANGED")  # rolls the admission back
            break
        except Conflict:
            # Someone else won the race (another scan, a cancellation, the no-show timer): say what happened.
            slip = await Slip.get(id=slip.id)
            await _refuse_by_state(slip, await Referral.get(id=referral.id))
            # Still scheduled with an active slip: the referral moved for another reason (the HIS job recording
            # the admission certificate bumps its version), so the scan tries again.
            if attempt == ATTEMPTS - 1:
                raise
    await slip.refresh_from_db()
    clerk = await Staff.get(id=principal.staff_id)
    waiting = (referral.admitted_at - referral.submitted_at
               if referral.admitted_at and referral.submitted_at else None)
    return CheckedIn(slip=slip, referral=referral, clerk_name=clerk.name, waiting=waiting)
