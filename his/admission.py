"""What the target HIS learns when a referral is scheduled (DESIGN §4): the patient, registered by real name
(a conditional create, so no re-registration on arrival and no duplicate on retry), and the electronic
admission certificate (a planned inpatient Encounter keyed by the referral code).

``issue_certificate`` is the HIS half of the ``his.admit`` outbox job that referrals.commands enqueues on
target approval (``his.jobs`` stores the number together with a timeline event); ``admit_referral`` does both
halves without the event. Running either twice is harmless: the HIS side is two conditional creates and the
platform side is guarded by the stored certificate number.
"""

from __future__ import annotations

import logging

from directory import cache
from his.gateway import AdmissionRequest, Diagnosis, HisGateway, PatientDemographics
from models import Patient, Referral, Staff
from models.referrals import HisSync
from patients.identifiers import link_identifier
from referrals.state_machine import Status
from security.crypto import PersonalDataCipher

log = logging.getLogger("referral_cloud.his.admission")

# A completed referral whose certificate job was held up by an outage still gets one (then marked finished).
ADMITTABLE = (Status.SCHEDULED, Status.ADMITTED, Status.COMPLETED)


def patient_demographics(patient: Patient, cipher: PersonalDataCipher) -> PatientDemographics:
    return PatientDemographics(
        name=patient.name, id_number=cipher.decrypt(patient.id_number_enc, "id_number"),
        gender=str(patient.gender) if str(patient.gender) in ("male", "female") else "unknown",  # type: ignore[arg-type]
        birth_date=patient.birth_date,
        phone=cipher.decrypt(patient.phone_enc, "phone") if patient.phone_enc else "")


async def admit_referral(gateway: HisGateway, cipher: PersonalDataCipher, referral_id: int) -> str | None:
    """Register the referral's patient at the target HIS and create the admission certificate; store its
    number on the referral. Returns the number, or None when the referral is no longer to be admitted
    (cancelled meanwhile). Raises HisError for the dispatcher to retry."""
    referral = await Referral.get(id=referral_id)
    if referral.admission_certificate_no:
        return referral.admission_certificate_no
    if referral.status not in ADMITTABLE:
        log.info("referral %s is %s: no admission certificate", referral.code, referral.status)
        return None
    number = await issue_certificate(gateway, cipher, referral)
    await Referral.filter(id=referral.id, admission_certificate_no="").update(
        admission_certificate_no=number, his_sync=HisSync.DONE)
    return number


async def issue_certificate(gateway: HisGateway, cipher: PersonalDataCipher, referral: Referral) -> str:
    """The HIS side of admit_referral: register the patient, create the certificate, link the MRN; returns the
    certificate number and leaves storing it to the caller (his.jobs stores it with a timeline event)."""
    if referral.admission_date is None:
        raise ValueError(f"referral {referral.code} is scheduled without an admission date")
    target = await cache.institution(referral.target_institution_id)  # type: ignore[attr-defined]
    source = await cache.institution(referral.source_institution_id)  # type: ignore[attr-defined]
    department = await cache.department(
        referral.admission_department_id or referral.target_department_id)  # type: ignore[attr-defined]
    patient = await Patient.get(id=referral.patient_id)  # type: ignore[attr-defined]
    referrer = await Staff.get_or_none(id=referral.referrer_id)  # type: ignore[attr-defined]

    mrn = await gateway.register_patient(target, patient_demographics(patient, cipher))
    clinical = referral.clinical or {}
    number = await gateway.create_admission(target, AdmissionRequest(
        referral_code=referral.code, patient_mrn=mrn, department_code=department.code,
        department_name=department.name, planned_date=referral.admission_date,
        diagnoses=[Diagnosis(code=str(d.get("code", "")), name=str(d.get("name", "")))
                   for d in clinical.get("diagnoses", []) if d.get("code") and d.get("name")],
        source_institution_code=source.code, source_institution_name=source.name,
        referring_doctor=referrer.name if referrer else "", reason=str(clinical.get("referral_reason", ""))[:100],
        ward=referral.ward, bed=referral.bed))

    await link_identifier(patient.id, target.id, "mrn", mrn,
                          message="目标医院 HIS 返回的病历号在本平台已关联其他患者，请联系信息科核对")
    log.info("referral %s: admission certificate issued by %s", referral.code, target.code)
    return number
