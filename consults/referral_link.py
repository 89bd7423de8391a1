"""Consultation → referral in one step: the referral is pre-filled from a concluded consultation (patient,
diagnosis, complaint, history, files, the expert's opinion), linked both ways, and, where the target's policy
says so, a `refer_up` opinion of an expert of the target department stands for the target's clinical review."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accounts.principal import Principal
from consults.access import visible_consultation
from consults.attachments import hand_on
from consults.state_machine import Status
from directory import cache
from errors import Conflict, Forbidden, InvalidInput
from models import Consultation, Department, Patient, Referral
from referrals.clinical import Clinical
from referrals.timeline import Actor, new_event, record_step


@dataclass
class Link:
    consultation: Consultation
    counts_as_review: bool


def _clinical(consultation: Consultation, given: Clinical) -> Clinical:
    """The consultation's case, with what the doctor typed on top, and the opinion as the reason if none."""
    merged = Clinical.model_validate(consultation.clinical or {}).model_dump()
    merged.update({k: v for k, v in given.model_dump().items() if v})
    opinion = consultation.opinion or {}
    if not merged.get("referral_reason"):
        reason = f"会诊意见（{opinion.get('expert', '')}）：{opinion.get('advice', '')}"
        merged["referral_reason"] = reason[:100]
    return Clinical.model_validate(merged)


async def prefill(principal: Principal, new):
    """`new` (a referrals.commands.NewReferral naming a consultation) completed from the consultation."""
    consultation = await visible_consultation(principal, new.consultation_id)
    if consultation.requester_id != principal.staff_id:  # type: ignore[attr-defined]
        raise Forbidden("仅会诊申请医生可据会诊意见发起转诊", code="NOT_THE_REQUESTER")
    if consultation.status != Status.CONCLUDED:
        raise Conflict("会诊尚未出具意见，不能据此发起转诊", code="CONSULTATION_NOT_CONCLUDED",
                       detail={"status": consultation.status})
    patient = await Patient.get(id=consultation.patient_id)  # type: ignore[attr-defined]
    if new.patient_id is not None and new.patient_id != patient.public_id:
        raise InvalidInput("转诊患者与会诊患者不一致", code="PATIENT_MISMATCH")
    opinion = consultation.opinion or {}
    institution_id, department_id = new.target_institution_id, new.target_department_id
    if institution_id is None or department_id is None:
        if opinion.get("suggested_department_id"):
            institution_id = opinion["suggested_institution_id"]
            department_id = opinion["suggested_department_id"]
        else:
            institution_id = (await cache.institution(consultation.target_institution_id)).public_id  # type: ignore[attr-defined]
            department_id = (await cache.department(consultation.target_department_id)).public_id  # type: ignore[attr-defined]
    filled = dataclasses.replace(new, patient_id=patient.public_id, target_institution_id=institution_id,
                                 target_department_id=department_id, urgency=new.urgency or consultation.urgency,
                                 clinical=_clinical(consultation, new.clinical))
    return filled, consultation


async def counts_as_review(consultation: Consultation, target_institution_id: int, target_department_id: int) -> bool:
    """Whether the target's policy lets this consultation's opinion stand for its clinical review: a `refer_up`
    by an expert of the very department the referral goes to."""
    if (consultation.opinion or {}).get("recommendation") != "refer_up" or consultation.expert_id is None:  # type: ignore[attr-defined]
        return False
    policy = await cache.policy(target_institution_id)
    if not policy.consult_opinion_is_review:
        return False
    expert = await cache.staff(consultation.expert_id)  # type: ignore[attr-defined]
    return (expert is not None and expert.institution_id == target_institution_id  # type: ignore[attr-defined]
            and expert.department_id == target_department_id)  # type: ignore[attr-defined]


async def linked(consultation: Consultation, referral: Referral, actor: Actor) -> None:
    """Inside the referral's creating transaction: the consultation's files go with it, and the consultation's
    timeline records the referral (so the link shows on both sides and is covered by its hash chain)."""
    await hand_on(consultation, referral, actor.staff_id)
    target = await cache.institution(referral.target_institution_id)  # type: ignore[attr-defined]
    department: Department = await cache.department(referral.target_department_id)  # type: ignore[attr-defined]
    for _ in range(3):  # a concurrent invite/announcement moved the version: chain onto the newer head
        event = await new_event(consultation, seq=consultation.version + 1, action="referral",
                                from_status=consultation.status, to_status=consultation.status, actor=actor,
                                data={"referral": referral.code, "referral_id": str(referral.public_id),
                                      "target": target.name, "department": department.name})
        if await record_step(consultation, event, {}):
            return
        consultation = await Consultation.get(id=consultation.id)
    raise Conflict("会诊记录正被他人修改，请重试", code="CONCURRENT_UPDATE")
