"""How a consultation looks to a caller: masked patient, both institutions, the opinion, the timeline, allowed
actions, its conversation and the referrals made from it."""

from __future__ import annotations

from accounts.principal import Principal
from chat.conversations import conversation_of
from consults.access import sides_of
from consults.attachments import file_view, files_of
from consults.commands import accept_deadline
from consults.state_machine import (
    ACTION_NAMES,
    DECLINE_REASONS,
    STATUS_NAMES,
    Action,
    Status,
    allowed_actions,
)
from directory import cache
from models import Consultation, ConsultationEvent, ConsultationMember, Patient, Referral
from models.chat import ConversationKind
from models.referrals import Urgency
from referrals.views import _department_ref, _institution_ref, timeline_event_view
from security.masking import mask_name
from timeutil import utcnow

OTHER_EVENT_NAMES = {"create": "发起会诊", "referral": "据会诊意见发起转诊"}


def _staff_ref(staff) -> dict | None:
    return {"id": str(staff.public_id), "name": staff.name, "title": staff.title} if staff else None


async def summary_view(consultation: Consultation) -> dict:
    due = await accept_deadline(consultation)
    status = Status(consultation.status)
    expert_id = consultation.expert_id or consultation.addressed_expert_id  # type: ignore[attr-defined]
    return {
        "id": str(consultation.public_id), "code": consultation.code, "status": consultation.status,
        "status_name": STATUS_NAMES[status], "urgency": consultation.urgency,
        "urgency_name": Urgency.NAMES.get(consultation.urgency, consultation.urgency),
        "patient_name": mask_name(consultation.patient_name), "version": consultation.version,
        "question": consultation.question,
        "requester_institution": _institution_ref(
            await cache.institution(consultation.requester_institution_id)),  # type: ignore[attr-defined]
        "target_institution": _institution_ref(
            await cache.institution(consultation.target_institution_id)),  # type: ignore[attr-defined]
        "target_department": _department_ref(
            await cache.department(consultation.target_department_id)),  # type: ignore[attr-defined]
        "expert": _staff_ref(await cache.staff(expert_id) if expert_id else None),
        "recommendation": (consultation.opinion or {}).get("recommendation"),
        "created_at": consultation.created_at, "updated_at": consultation.updated_at,
        "deadline_at": due, "overdue": bool(due and due < utcnow()),
    }


def event_view(event: ConsultationEvent) -> dict:
    action = event.action
    return timeline_event_view(event, ACTION_NAMES[Action(action)] if action in Action.__members__.values()
                               else OTHER_EVENT_NAMES.get(action, action), STATUS_NAMES[Status(event.to_status)])


async def consultation_view(consultation: Consultation, principal: Principal) -> dict:
    sides = await sides_of(principal, consultation)
    patient = await Patient.get(id=consultation.patient_id)  # type: ignore[attr-defined]
    requester = await cache.staff(consultation.requester_id)  # type: ignore[attr-defined]
    members = await ConsultationMember.filter(consultation_id=consultation.id).order_by("id")
    events = await ConsultationEvent.filter(consultation_id=consultation.id).order_by("seq")
    referrals = await Referral.filter(consultation_id=consultation.id).order_by("id")
    conversation = await conversation_of(ConversationKind.CONSULTATION, consultation.public_id)
    view = await summary_view(consultation)
    view.update({
        "patient": {"id": str(patient.public_id), "name": mask_name(patient.name), "gender": str(patient.gender)},
        "requester": _staff_ref(requester),
        "addressed_to": "expert" if consultation.addressed_expert_id else "pool",  # type: ignore[attr-defined]
        "clinical": consultation.clinical,
        "opinion": consultation.opinion or None,
        "decline": ({"code": consultation.decline_code, "reason": DECLINE_REASONS.get(consultation.decline_code, ""),
                     "text": consultation.decline_text} if consultation.decline_code else None),
        "invited": [_staff_ref(await cache.staff(m.staff_id)) for m in members],  # type: ignore[attr-defined]
        "attachments": [file_view(a, consultation) for a in await files_of(consultation)],
        "referrals": [{"id": str(r.public_id), "code": r.code, "status": str(r.status)} for r in referrals],
        "conversation_id": str(conversation.public_id) if conversation else None,
        "allowed_actions": [str(a) for a in allowed_actions(Status(consultation.status), sides=sides,
                                                             roles=set(principal.roles))],
        "timeline": [event_view(e) for e in events],
    })
    return view
