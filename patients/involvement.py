"""Which member institutions have business with a patient. Two questions, asked in one place each:

- `involving`: does a referral or a cloud consultation for the patient involve the institution?
  Only then may a doctor there read another member's HIS about the patient (issue 10, point 4).
- `treats`: does the institution treat the patient (it holds a number of theirs from its HIS, or it is involved
  as above)? Its staff may then confirm, in person, that someone is that patient (accounts.binding).

Every cross-institution HIS read is audited through `audit_his_read`, with no personal data in the detail."""

from __future__ import annotations

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models import Consultation, Institution, Patient, PatientIdentifier, Referral
from referrals.access import NEVER_SUBMITTED
from security import audit


async def involving(patient_id: int, institution_id: int) -> Referral | Consultation | None:
    """The latest referral of the patient that involves the institution (as its source, or as its target once
    it is submitted: a draft is the source's alone), else the latest cloud consultation about the patient that
    the institution asked for or was asked. None when nothing involves it. The one place that answers
    "involves"."""
    as_target = Q(target_institution_id=institution_id) & ~NEVER_SUBMITTED
    referral = await Referral.filter(Q(source_institution_id=institution_id) | as_target, patient_id=patient_id) \
        .order_by("-id").first()
    if referral is not None:
        return referral
    return await Consultation.filter(Q(requester_institution_id=institution_id)
                                     | Q(target_institution_id=institution_id), patient_id=patient_id) \
        .order_by("-id").first()


async def treats(patient_id: int, institution_id: int) -> bool:
    """Whether the institution treats the patient: its HIS knows them (a recorded MRN or card number) or a
    referral involves it."""
    if await PatientIdentifier.filter(patient_id=patient_id, institution_id=institution_id).exists():
        return True
    return await involving(patient_id, institution_id) is not None


async def audit_his_read(patient: Patient | None, *, his: Institution, reader_institution_id: int | None,
                         purpose: str, actor_staff_id: int | None = None, actor_account_id: int | None = None,
                         referral: Referral | Consultation | None = None) -> None:
    """Record that `his`'s HIS was read about `patient` on behalf of another institution (or of no institution:
    a patient proving who they are). `purpose` says why: "scan", "reports", "binding_phone"."""
    async with in_transaction():
        await audit.record("his.cross_institution_read", "patient", str(patient.public_id) if patient else "",
                           actor_staff_id=actor_staff_id, actor_account_id=actor_account_id,
                           institution_id=reader_institution_id,
                           detail={"his": his.code, "purpose": purpose,
                                   **_subject(referral)})


def _subject(involved: Referral | Consultation | None) -> dict:
    """What the read was for, by its code: {"referral": code} or {"consultation": code}."""
    if isinstance(involved, Consultation):
        return {"consultation": involved.code}
    return {"referral": involved.code if involved else None}
