"""HIS side effects as outbox jobs. `his.admit` (enqueued on target approval) registers the patient in the
target HIS and creates the electronic admission certificate (his.admission.issue_certificate, two conditional
creates, so a retry never duplicates anything), then stores the certificate number on the referral together
with a timeline event. The referral's `his_sync` reads pending → done, or failed once the job is dead.

Failure mapping: HIS unreachable, 5xx, timeouts and garbled answers are temporary (retried with backoff); a
rejection (OperationOutcome), a missing record or an MRN already linked to another patient are permanent.
"""

from __future__ import annotations

import logging

from tortoise.transactions import in_transaction

from appkeys import CIPHER, HIS
from errors import Conflict
from his.admission import ADMITTABLE, issue_certificate
from his.gateway import HisError, HisNotFound, HisRejected
from models import HisSync, Referral, ReferralEvent
from outbox.registry import JobContext, PermanentFailure, TemporaryFailure, handler, on_dead
from referrals.timeline import SYSTEM_ACTOR, chain_head, new_event

log = logging.getLogger("referral_cloud.his.jobs")

ADMIT = "his.admit"
CERTIFICATE_EVENT = "his_admission"  # the timeline action that records the certificate number
# A concurrent transition may win the version race; try again at once this often before backing off.
RECORD_TRIES = 3


@handler(ADMIT)
async def admit(ctx: JobContext) -> None:
    referral = await Referral.get_or_none(id=ctx.job.payload.get("referral_id"))
    if referral is None:
        raise PermanentFailure("转诊单不存在")
    number = referral.admission_certificate_no
    if not number:
        if referral.status not in ADMITTABLE:
            # Cancelled (or redirected) before the HIS heard of it: nothing to send, nothing pending.
            await Referral.filter(id=referral.id, his_sync=HisSync.PENDING).update(his_sync=HisSync.NONE)
            log.info("referral %s is %s: no admission certificate", referral.code, referral.status)
            return
        try:
            number = await issue_certificate(ctx.app[HIS], ctx.app[CIPHER], referral)
        except (HisRejected, HisNotFound) as exc:
            raise PermanentFailure(exc.message) from exc
        except HisError as exc:
            raise TemporaryFailure(exc.message) from exc
        except Conflict as exc:
            raise PermanentFailure(exc.message) from exc
        except ValueError as exc:
            raise PermanentFailure("转诊单已安排入院但缺少入院日期") from exc
    for _ in range(RECORD_TRIES):
        if await record_certificate(referral.id, number):
            return
    raise TemporaryFailure("转诊单正被同时修改，稍后重试记录住院证号")


async def record_certificate(referral_id: int, number: str) -> bool:
    """Store the number, mark the sync done and append the timeline event, in one transaction. The version is
    bumped with a conditional update (as referrals.commands does), so a concurrent transition either comes
    wholly before or wholly after this event. False when that transition won; True once recorded."""
    async with in_transaction():
        referral = await Referral.get(id=referral_id)
        if await ReferralEvent.filter(referral_id=referral_id, action=CERTIFICATE_EVENT).exists():
            return True  # recorded by an earlier run
        version = referral.version
        event = await new_event(referral, seq=version + 1, action=CERTIFICATE_EVENT,
                                from_status=str(referral.status), to_status=str(referral.status), actor=SYSTEM_ACTOR,
                                comment=f"目标医院 HIS 已开具电子住院证，编号 {number}",
                                data={"admission_certificate_no": number})
        won = await Referral.filter(id=referral_id, version=version).update(
            version=version + 1, his_sync=HisSync.DONE, admission_certificate_no=number, chain_head=chain_head(event))
        if not won:
            return False
        await event.save()
    return True


@on_dead(ADMIT)
async def admit_failed(ctx: JobContext, reason: str) -> None:
    await Referral.filter(id=ctx.job.payload.get("referral_id"), his_sync=HisSync.PENDING).update(
        his_sync=HisSync.FAILED)
