"""Linking a patient to a number an institution's HIS gave them (MRN, card number), safe when two writers link
the same number at once (a job retried while the first run still finishes, two scans of one patient)."""

from __future__ import annotations

from errors import Conflict
from models import PatientIdentifier

CONFLICT_MESSAGE = "该病历号在本平台已关联其他患者，请联系信息科核对 HIS 主索引"


async def link_identifier(patient_id: int, institution_id: int, system: str, value: str, *,
                          message: str = CONFLICT_MESSAGE) -> None:
    """Record that `value` is the patient's `system` number at the institution. The same link written
    concurrently is fine (get_or_create re-reads after a unique violation); the number already linked to
    another patient is a 409 for the institution's IT to sort out, never a silent re-link."""
    row, _ = await PatientIdentifier.get_or_create(institution_id=institution_id, system=system, value=value,
                                                   defaults={"patient_id": patient_id})
    if row.patient_id != patient_id:  # type: ignore[attr-defined]
        raise Conflict(message, code="IDENTIFIER_CONFLICT")
