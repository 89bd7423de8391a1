"""The bound patient's own QR card (issue 3 item 4): which of the account's patients, and a fresh token."""

from __future__ import annotations

import uuid

from accounts.principal import Principal
from errors import NotFound
from models import Patient, PatientBinding, Relation
from qr.patient_card import PatientCard, issue_card


async def card_for(principal: Principal, card_secret: str,
                   patient_public_id: uuid.UUID | None = None) -> tuple[Patient, PatientBinding, PatientCard]:
    """The card of one of the caller's bound patients: the one asked for, else the caller themself (本人),
    else the first bound. Raises Forbidden for callers without patients, NotFound for others' patients."""
    principal.require_patient()
    bindings = await PatientBinding.filter(account_id=principal.account_id, patient__deleted_at=None) \
        .prefetch_related("patient").order_by("id")
    if patient_public_id is not None:
        chosen = next((b for b in bindings if b.patient.public_id == patient_public_id), None)
        if chosen is None:
            raise NotFound("您没有绑定该就诊人", code="PATIENT_NOT_BOUND")
    else:
        chosen = next((b for b in bindings if b.relation == Relation.SELF), None) or (bindings[0] if bindings else None)
        if chosen is None:
            raise NotFound("您还没有绑定就诊人", code="PATIENT_NOT_BOUND")
    return chosen.patient, chosen, issue_card(card_secret, chosen.patient.public_id)
