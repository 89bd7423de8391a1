"""Orders at the target HIS in a referral's context, and the target's reports read back.

Placing an order writes the order and a `his.place_order` job in one transaction; the job places it
through the HIS gateway (the platform's order id is the conditional-create key, so a retry never makes a
second order). A HIS that is down delays the order, it never loses it."""

from __future__ import annotations

from datetime import datetime

from tortoise.transactions import in_transaction

from accounts.principal import Principal
from directory import cache
from errors import Conflict, Forbidden
from his.admission import patient_demographics
from his.gateway import HisGateway, HisRejected, Order, Report
from models import Institution, Patient, PatientIdentifier, Referral, ReferralOrder, Staff
from outbox.jobs import enqueue
from outbox.registry import JobContext, PermanentFailure, handler
from patients.identifiers import link_identifier
from patients.involvement import audit_his_read
from referrals.access import sides_of, visible_referral
from referrals.state_machine import Side, Status
from security.crypto import PersonalDataCipher

ORDERABLE = (Status.PENDING_TARGET, Status.SCHEDULED, Status.ADMITTED)
KIND_NAMES = {"exam": "检查", "lab": "检验", "treatment": "治疗", "prescription": "处方"}
STATE_NAMES = {"pending": "等待送达 HIS", "placed": "已送达 HIS", "rejected": "HIS 已拒绝"}


def _require_clinician(principal: Principal, referral: Referral, *, write: bool) -> None:
    sides = sides_of(principal, referral)
    if write:
        # The referring doctor orders at the target (DESIGN §1).
        if Side.REFERRER not in sides:
            raise Forbidden("仅转诊医生可以在接收机构开具检查、检验、治疗和处方", code="REFERRER_ONLY")
        return
    if not sides or not principal.roles.intersection({"doctor", "expert"}):
        raise Forbidden("仅双方机构的医生可以查看检查检验报告", code="ROLE_REQUIRED")


async def place_order(principal: Principal, public_id, *, kind: str, code: str, name: str, note: str = "",
                      dosage: str = "", quantity: float | None = None, unit: str = "") -> ReferralOrder:
    referral = await visible_referral(principal, public_id)
    _require_clinician(principal, referral, write=True)
    if referral.status not in ORDERABLE:
        raise Conflict("转诊单需已提交至接收机构且未结束，才能开具医嘱", code="INVALID_STATE",
                       detail={"status": str(referral.status)})
    async with in_transaction():
        order = await ReferralOrder.create(
            referral=referral, kind=kind, code=code, name=name, ordered_by_id=principal.staff_id, state="pending",
            detail={"note": note, "dosage": dosage, "quantity": quantity, "unit": unit})
        await enqueue("his.place_order", {"order_id": order.id}, dedupe_key=f"his-order:{order.id}")
    return order


async def orders_of(principal: Principal, public_id) -> list[ReferralOrder]:
    referral = await visible_referral(principal, public_id)
    _require_clinician(principal, referral, write=False)
    return await ReferralOrder.filter(referral_id=referral.id).order_by("id")


async def mrn_at(gateway: HisGateway, cipher: PersonalDataCipher, institution: Institution, patient: Patient) -> str:
    """The patient's MRN at `institution`, registering them there (conditional create) when unknown."""
    known = await PatientIdentifier.get_or_none(patient_id=patient.id, institution_id=institution.id, system="mrn")
    if known:
        return known.value
    mrn = await gateway.register_patient(institution, patient_demographics(patient, cipher))
    await link_identifier(patient.id, institution.id, "mrn", mrn)
    return mrn


@handler("his.place_order")
async def place_order_job(ctx: JobContext) -> None:
    from appkeys import CIPHER, HIS
    from his.gateway import HisError
    from his.jobs import retry_later

    order = await ReferralOrder.get(id=ctx.job.payload["order_id"])
    if order.state == "placed":
        return
    referral = await Referral.get(id=order.referral_id)  # type: ignore[attr-defined]
    target = await cache.institution(referral.target_institution_id)  # type: ignore[attr-defined]
    patient = await Patient.get(id=referral.patient_id)  # type: ignore[attr-defined]
    requester = await Staff.get_or_none(id=order.ordered_by_id)  # type: ignore[attr-defined]
    gateway = ctx.app[HIS]
    detail = order.detail or {}
    try:
        mrn = await mrn_at(gateway, ctx.app[CIPHER], target, patient)
        placed = await gateway.place_order(target, Order(
            order_id=str(order.public_id), patient_mrn=mrn, kind=order.kind, code=order.code, name=order.name,
            requester=requester.name if requester else "", note=detail.get("note", ""), referral_code=referral.code,
            dosage=detail.get("dosage", ""), quantity=detail.get("quantity"), unit=detail.get("unit", "")))
    except HisRejected as exc:
        await ReferralOrder.filter(id=order.id).update(state="rejected")
        raise PermanentFailure(exc.message) from exc
    except HisError as exc:  # down, busy (429: back when Retry-After says), credentials refused: stays pending
        raise retry_later(exc) from exc
    await ReferralOrder.filter(id=order.id).update(state="placed", his_order_id=placed.his_id)


async def reports_of(gateway: HisGateway, cipher: PersonalDataCipher, principal: Principal,
                     public_id) -> tuple[list[Report], dict[str, ReferralOrder]]:
    """The target's reports for this patient since the referral was written (read live from its HIS)."""
    referral = await visible_referral(principal, public_id)
    _require_clinician(principal, referral, write=False)
    known = await PatientIdentifier.get_or_none(patient_id=referral.patient_id,  # type: ignore[attr-defined]
                                                institution_id=referral.target_institution_id,  # type: ignore[attr-defined]
                                                system="mrn")
    if known is None:
        return [], {}
    target = await cache.institution(referral.target_institution_id)  # type: ignore[attr-defined]
    if principal.institution_id != target.id:  # the source's doctor reads the target's HIS
        await audit_his_read(await Patient.get(id=referral.patient_id), his=target,  # type: ignore[attr-defined]
                             reader_institution_id=principal.institution_id, purpose="reports",
                             actor_staff_id=principal.staff_id, actor_account_id=principal.account_id,
                             referral=referral)
    since: datetime = referral.created_at
    reports = await gateway.list_reports(target, known.value, since=since)
    orders = {str(o.public_id): o for o in await ReferralOrder.filter(referral_id=referral.id)}
    return reports, orders
