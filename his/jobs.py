"""HIS side effects as outbox jobs. `his.admit` (enqueued on target approval) registers the patient in the
target HIS and creates the electronic admission certificate (his.admission.issue_certificate, two conditional
creates, so a retry never duplicates anything), then stores the certificate number on the referral together
with a timeline event. The referral's `his_sync` reads pending → done, or failed once the job is dead.
`his.update_admission` (enqueued by cancel, the no-show expiry, reschedule, check-in and completion when the
certificate exists or is being issued) withdraws or moves the planned Encounter in the target HIS, marks it
in-progress at check-in and finished with the return summary on completion, and records that on the timeline;
while his.admit is still pending it waits (retries), and it does nothing once the HIS never had the certificate.

Failure mapping: HIS unreachable, 5xx, timeouts, refused credentials and garbled answers are temporary (retried
with backoff); a busy HIS (429/502/503/504) is temporary and the job comes back when its Retry-After says, without
using up an attempt; a rejection (OperationOutcome), a missing record or an MRN already linked to another patient
are permanent.
"""

from __future__ import annotations

import logging

from tortoise.transactions import in_transaction

from appkeys import CIPHER, HIS
from directory import cache
from errors import Conflict
from his.admission import ADMITTABLE, issue_certificate
from his.gateway import AdmissionChange, Discharge, HisBusy, HisError, HisNotFound, HisRejected
from models import HisSync, Referral, ReferralEvent
from outbox.registry import JobContext, PermanentFailure, TemporaryFailure, handler, on_dead
from referrals.state_machine import Status
from referrals.timeline import SYSTEM_ACTOR, new_event, record_step

log = logging.getLogger("referral_cloud.his.jobs")

ADMIT = "his.admit"
CERTIFICATE_EVENT = "his_admission"  # the timeline action that records the certificate number
UPDATE_ADMISSION = "his.update_admission"
UPDATE_EVENT = "his_admission_update"  # the timeline action that records a change made in the HIS
# A concurrent transition may win the version race; try again at once this often before backing off.
RECORD_TRIES = 3


BUSY_MESSAGE = "目标医院 HIS 繁忙，稍后自动重试"


def retry_later(exc: HisError) -> TemporaryFailure:
    """The outbox's temporary failure for a HIS error; a busy HIS's with the wait it asked for (and a message
    saying the job will come back by itself, never the rate limiter's own text)."""
    if isinstance(exc, HisBusy):
        return TemporaryFailure(BUSY_MESSAGE, retry_after=exc.retry_after)
    return TemporaryFailure(exc.message)


@handler(ADMIT)
async def admit(ctx: JobContext) -> None:
    referral = await Referral.get_or_none(id=ctx.job.payload.get("referral_id"))
    if referral is None:
        raise PermanentFailure("转诊单不存在")
    number = referral.admission_certificate_no
    if not number:
        if referral.status not in ADMITTABLE:
            # Cancelled before a certificate was recorded. An earlier run may have had one issued and died
            # before recording it: make sure the HIS holds none for this referral, then stand down.
            await _withdraw_unrecorded(ctx, referral)
            await Referral.filter(id=referral.id, his_sync=HisSync.PENDING).update(his_sync=HisSync.NONE)
            log.info("referral %s is %s: no admission certificate", referral.code, referral.status)
            return
        try:
            number = await issue_certificate(ctx.app[HIS], ctx.app[CIPHER], referral)
        except (HisRejected, HisNotFound) as exc:
            raise PermanentFailure(exc.message) from exc
        except HisError as exc:
            raise retry_later(exc) from exc
        except Conflict as exc:
            raise PermanentFailure(exc.message) from exc
        except ValueError as exc:
            raise PermanentFailure("转诊单已安排入院但缺少入院日期") from exc
    for _ in range(RECORD_TRIES):
        if await record_certificate(referral.id, number):
            return
    raise TemporaryFailure("转诊单正被同时修改，稍后重试记录住院证号")


async def _update_his(ctx: JobContext, referral: Referral, change: AdmissionChange) -> str | None:
    """Send `change` to the referral's target HIS; its errors as the dispatcher reads them: a version conflict
    (412) or an outage is tried again, any other refusal is final."""
    target = await cache.institution(referral.target_institution_id)  # type: ignore[attr-defined]
    try:
        return await ctx.app[HIS].update_admission(target, change)
    except HisRejected as exc:
        if exc.http_status == 412:  # changed in the HIS meanwhile: read it again
            raise TemporaryFailure(exc.message) from exc
        raise PermanentFailure(exc.message) from exc
    except HisError as exc:
        raise retry_later(exc) from exc


async def _withdraw_unrecorded(ctx: JobContext, referral: Referral) -> None:
    number = await _update_his(ctx, referral, AdmissionChange(referral.code, cancelled=True))
    if number is not None:
        log.warning("referral %s: withdrew certificate %s that was issued but never recorded", referral.code, number)


async def record_certificate(referral_id: int, number: str) -> bool:
    """Store the number, mark the sync done and append the timeline event, in one transaction. The version is
    bumped with a conditional update (as referrals.commands does), so a concurrent transition either comes
    wholly before or wholly after this event. False when that transition won; True once recorded."""
    async with in_transaction():
        referral = await Referral.get(id=referral_id)
        if await ReferralEvent.filter(referral_id=referral_id, action=CERTIFICATE_EVENT).exists():
            return True  # recorded by an earlier run
        return await _system_event(referral, CERTIFICATE_EVENT, f"目标医院 HIS 已开具电子住院证，编号 {number}",
                                   {"admission_certificate_no": number},
                                   his_sync=HisSync.DONE, admission_certificate_no=number)


async def _system_event(referral: Referral, action: str, comment: str, data: dict, **changes) -> bool:
    """Append a platform event that leaves the status as it is, bumping the version conditionally together
    with `changes` (inside the caller's transaction). False when a concurrent transition won the version."""
    event = await new_event(referral, seq=referral.version + 1, action=action, from_status=str(referral.status),
                            to_status=str(referral.status), actor=SYSTEM_ACTOR, comment=comment, data=data)
    return await record_step(referral, event, changes)


@handler(UPDATE_ADMISSION)
async def update_admission(ctx: JobContext) -> None:
    """{referral_id, seq}: after transition `seq` (cancel, no-show expiry, reschedule, check-in, completion) of a
    referral whose certificate was issued or is being issued, bring the target HIS's admission in line with the
    referral as it is now (a later change's job finds it already done), and say so on the timeline."""
    payload = ctx.job.payload
    referral = await Referral.get_or_none(id=payload.get("referral_id"))
    if referral is None:
        raise PermanentFailure("转诊单不存在")
    if not referral.admission_certificate_no:
        if referral.his_sync == HisSync.PENDING:
            raise TemporaryFailure("电子住院证尚在开具中，开具后再同步变更")
        return  # the HIS never had it: his.admit saw the change first, or gave up
    department = await cache.department(referral.admission_department_id  # type: ignore[attr-defined]
                                        or referral.target_department_id)  # type: ignore[attr-defined]
    change = admission_change(referral, department)
    number = await _update_his(ctx, referral, change)
    if number is None:
        raise PermanentFailure(f"目标医院 HIS 中找不到转诊单 {referral.code} 的电子住院证")
    comment = _change_comment(change, number, department.name)
    for _ in range(RECORD_TRIES):
        async with in_transaction():
            current = await Referral.get(id=referral.id)
            if await _already_said(current.id, payload.get("seq"), comment):
                return
            if await _system_event(current, UPDATE_EVENT, comment,
                                   {"admission_certificate_no": number, "cancelled": change.cancelled,
                                    "encounter_status": change.status, "after_seq": payload.get("seq")}):
                return
    raise TemporaryFailure("转诊单正被同时修改，稍后重试记录住院证变更")


def admission_change(referral: Referral, department) -> AdmissionChange:
    """What the target HIS's admission Encounter should say, given the referral as it is now."""
    change = AdmissionChange(referral_code=referral.code,
                             cancelled=referral.status in (Status.CANCELLED, Status.EXPIRED),
                             planned_date=referral.admission_date, department_code=department.code,
                             department_name=department.name, ward=referral.ward, bed=referral.bed)
    if referral.status in (Status.ADMITTED, Status.COMPLETED):
        change.admitted_at = referral.admitted_at or referral.updated_at
    if referral.status == Status.COMPLETED:
        summary = referral.return_summary or {}
        change.discharge = Discharge(discharged_at=referral.closed_at or referral.updated_at,
                                     diagnosis=str(summary.get("diagnosis", "")),
                                     treatment=str(summary.get("treatment", "")),
                                     results=str(summary.get("results", "")),
                                     recommendations=str(summary.get("recommendations", "")))
    return change


def _change_comment(change: AdmissionChange, number: str, department: str) -> str:
    if change.status == "cancelled":
        return f"目标医院 HIS 已撤销电子住院证 {number}"
    if change.status == "in-progress":
        return f"目标医院 HIS 已登记入院（电子住院证 {number}）"
    if change.status == "finished":
        return f"目标医院 HIS 已登记出院并收到出院（回转）小结（电子住院证 {number}）"
    day = change.planned_date
    return f"目标医院 HIS 电子住院证 {number} 已改为 {day.year}年{day.month}月{day.day}日入院（{department}）"


async def _already_said(referral_id: int, seq: int | None, comment: str) -> bool:
    """Whether an earlier run of the job for transition `seq` recorded its event, or a later transition's job
    already recorded the same change (the HIS is brought to the referral's current state, whichever job ran)."""
    events = await ReferralEvent.filter(referral_id=referral_id, action=UPDATE_EVENT, seq__gt=seq or 0)
    return any(e.data.get("after_seq") == seq or e.comment == comment for e in events)


@on_dead(ADMIT)
async def admit_failed(ctx: JobContext, reason: str) -> None:
    await Referral.filter(id=ctx.job.payload.get("referral_id"), his_sync=HisSync.PENDING).update(
        his_sync=HisSync.FAILED)
