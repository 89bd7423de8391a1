"""How a referral looks to a caller: masked patient, both institutions, timeline, allowed actions."""

from __future__ import annotations

from datetime import datetime

from accounts.principal import Principal
from directory import cache
from models import Consultation, Department, Institution, Patient, Referral, ReferralEvent, joined
from models.base import TimelineEvent
from models.referrals import Urgency
from referrals.access import effective_roles, sides_of
from referrals.clinical import REJECTION_REASONS
from referrals.policy import deadline, policy_of
from referrals.state_machine import (
    ACTION_NAMES,
    DIRECTION_NAMES,
    FHIR_STATUS,
    STATUS_NAMES,
    Action,
    Status,
    allowed_actions,
)
from security.masking import mask_name, mask_phone
from timeutil import china_today, utcnow


async def deadline_of(referral: Referral) -> datetime | None:
    """When the institution responsible for the current step must have answered."""
    if referral.stage_started_at is None or referral.status not in (Status.PENDING_SOURCE, Status.PENDING_TARGET):
        return None
    responsible = (referral.source_institution_id if referral.status == Status.PENDING_SOURCE  # type: ignore[attr-defined]
                   else referral.target_institution_id)  # type: ignore[attr-defined]
    return deadline(await policy_of(responsible), referral.urgency, referral.stage_started_at)


async def _department(pk: int | None) -> Department | None:
    return await cache.department(pk) if pk is not None else None


def _institution_ref(i: Institution) -> dict:
    return {"id": str(i.public_id), "code": i.code, "name": i.name, "level": str(i.level)}


def _department_ref(d: Department | None) -> dict | None:
    return {"id": str(d.public_id), "code": d.code, "name": d.name} if d else None


async def summary_view(referral: Referral) -> dict:
    """A worklist row (institutions, departments and policies come from the process cache)."""
    due = await deadline_of(referral)
    return {
        "id": str(referral.public_id), "code": referral.code, "status": str(referral.status),
        "status_name": STATUS_NAMES[referral.status], "direction": str(referral.direction),
        "direction_name": DIRECTION_NAMES[referral.direction], "urgency": referral.urgency,
        "urgency_name": Urgency.NAMES.get(referral.urgency, referral.urgency),
        "patient_name": mask_name(referral.patient_name), "version": referral.version,
        "source_institution": _institution_ref(await cache.institution(referral.source_institution_id)),  # type: ignore[attr-defined]
        "target_institution": _institution_ref(await cache.institution(referral.target_institution_id)),  # type: ignore[attr-defined]
        "target_department": _department_ref(await _department(referral.target_department_id)),  # type: ignore[attr-defined]
        "submitted_at": referral.submitted_at, "updated_at": referral.updated_at,
        "admission_date": referral.admission_date.isoformat() if referral.admission_date else None,
        "deadline_at": due, "overdue": bool(due and due < utcnow()),
    }


# Timeline events that are not transitions of the state machine.
OTHER_EVENT_NAMES = {"create": "创建转诊单", "his_admission": "HIS 已开具电子住院证",
                     "his_admission_update": "HIS 电子住院证已同步变更"}


def event_view(event: ReferralEvent) -> dict:
    action = event.action
    return timeline_event_view(event, ACTION_NAMES[Action(action)] if action in Action.__members__.values()
                               else OTHER_EVENT_NAMES.get(action, action), STATUS_NAMES[Status(event.to_status)])


def timeline_event_view(event: TimelineEvent, action_name: str, to_status_name: str) -> dict:
    """One event of any hash-chained timeline (referral, consultation), with its names in Chinese."""
    return {"seq": event.seq, "at": event.at, "action": event.action, "action_name": action_name,
            "from_status": event.from_status or None, "to_status": event.to_status,
            "to_status_name": to_status_name,
            "actor": {"name": event.actor_name, "role": event.actor_role,
                      "institution": event.actor_institution_name},
            "comment": event.comment, "data": event.data, "hash": event.hash}


async def linked_consultation(referral: Referral) -> dict | None:
    """The consultation a referral was made from, as its detail shows it: the expert's opinion, and whether the
    target's policy let that opinion stand for the clinical review (the approver then only books the bed)."""
    if referral.consultation_id is None:  # type: ignore[attr-defined]
        return None
    consultation = await Consultation.get(id=referral.consultation_id)  # type: ignore[attr-defined]
    return {"id": str(consultation.public_id), "code": consultation.code, "status": consultation.status,
            "opinion": consultation.opinion or None, "counts_as_review": referral.reviewed_in_consultation}


async def referral_view(referral: Referral, principal: Principal, cipher) -> dict:
    sides = sides_of(principal, referral)
    roles = await effective_roles(principal, referral, sides)
    # access.visible_referral reads the referral with its patient; other callers' rows fetch it here.
    patient = joined(referral, "patient", Patient) or await Patient.get(id=referral.patient_id)  # type: ignore[attr-defined]
    referrer = await cache.staff(referral.referrer_id)  # type: ignore[attr-defined]
    events = await ReferralEvent.filter(referral_id=referral.id).order_by("seq")
    age = None
    if patient.birth_date:
        today = china_today()
        age = today.year - patient.birth_date.year - ((today.month, today.day) <
                                                       (patient.birth_date.month, patient.birth_date.day))
    phone = cipher.decrypt(referral.contact_phone_enc, "phone") if referral.contact_phone_enc else ""
    view = await summary_view(referral)
    view.update({
        "fhir_status": FHIR_STATUS[referral.status],
        "patient": {"id": str(patient.public_id), "name": mask_name(patient.name), "gender": str(patient.gender),
                    "age": age},
        "source_department": _department_ref(await _department(referral.source_department_id)),  # type: ignore[attr-defined]
        "referrer": {"id": str(referrer.public_id), "name": referrer.name, "title": referrer.title},
        "clinical": referral.clinical,
        "contact_phone": mask_phone(phone) if phone else "",
        "admission": ({"date": referral.admission_date.isoformat(),
                       "department": _department_ref(await _department(referral.admission_department_id)),  # type: ignore[attr-defined]
                       "ward": referral.ward, "bed": referral.bed} if referral.admission_date else None),
        "rejection": ({"code": referral.rejection_code, "reason": REJECTION_REASONS.get(referral.rejection_code, ""),
                       "text": referral.rejection_text} if referral.rejection_code else None),
        "return_summary": referral.return_summary or None,
        "his_sync": referral.his_sync,
        "admission_certificate_no": referral.admission_certificate_no or None,
        "previous_id": str((await Referral.get(id=referral.previous_id)).public_id) if referral.previous_id else None,  # type: ignore[attr-defined]
        "consultation": await linked_consultation(referral),
        "allowed_actions": [str(a) for a in allowed_actions(referral.status, sides=sides, roles=roles,
                                                             needs_source_approval=referral.needs_source_approval)],
        "timeline": [event_view(e) for e in events],
    })
    return view
