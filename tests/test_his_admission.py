"""The his.admit job against the embedded simulator through the real app's gateway: a scheduled referral's
patient is registered at the target HIS once and gets exactly one planned inpatient Encounter, however
often the job runs; a down HIS leaves the referral untouched for the dispatcher to retry."""

from __future__ import annotations

from datetime import date

import pytest

from appkeys import CIPHER, HIS, HIS_SIMULATOR
from his import profile
from his.admission import admit_referral
from his.gateway import HisServerError
from his.simulator import Fault
from models import Department, Institution, Patient, PatientIdentifier, Referral, Staff
from models.referrals import HisSync
from referrals.state_machine import Direction, Status
from security.idcard import make_id_number
from tests.support import seeded

ID_NUMBER = make_id_number("321084", date(1958, 4, 12), 17)


async def scheduled_referral(app, *, status: Status = Status.SCHEDULED) -> Referral:
    cipher = app[CIPHER]
    source = await Institution.get(code="GAOYOU")
    target = await Institution.get(code="SUBEI")
    department = await Department.get(institution_id=target.id, code="NEUR")
    doctor = await Staff.get(institution_id=source.id, his_user_id="DOCTOR001")
    patient = await Patient.create(name="陆文龙", id_number_enc=cipher.encrypt(ID_NUMBER, "id_number"),
                                   id_number_hash=cipher.lookup_hash("id_number", ID_NUMBER), gender="male",
                                   birth_date=date(1958, 4, 12), phone_enc=cipher.encrypt("13952712345", "phone"),
                                   phone_hash=cipher.lookup_hash("phone", "13952712345"))
    return await Referral.create(
        code="ZZ2026120300001", status=status, direction=Direction.UP, patient=patient, referrer=doctor,
        source_institution=source, target_institution=target, target_department=department,
        admission_department=department, admission_date=date(2026, 12, 3), ward="神经内科病区", bed="12床",
        patient_name="陆*龙", his_sync=HisSync.PENDING,
        clinical={"diagnoses": [{"code": "I63.9", "name": "脑梗死"}], "chief_complaint": "左侧肢体无力6小时",
                  "referral_reason": "需上级医院溶栓评估"})


def his_patients(app, id_number: str) -> list[dict]:
    return [p for p in app[HIS_SIMULATOR].store("SUBEI").all("Patient")
            if any(i["value"] == id_number for i in p["identifier"])]


def admissions(app, referral_code: str) -> list[dict]:
    return [e for e in app[HIS_SIMULATOR].store("SUBEI").all("Encounter")
            if any(i.get("system") == profile.REFERRAL_SYSTEM and i["value"] == referral_code
                   for i in e.get("identifier", []))]


async def test_admitting_twice_registers_one_patient_and_one_planned_encounter(client):
    app = client.server.app
    await seeded(client)
    referral = await scheduled_referral(app)
    number = await admit_referral(app[HIS], app[CIPHER], referral.id)
    assert number and number.startswith("ZY")
    # The job may run again (a retry, a second worker): nothing is duplicated on either side.
    await Referral.filter(id=referral.id).update(admission_certificate_no="")
    assert await admit_referral(app[HIS], app[CIPHER], referral.id) == number
    assert await admit_referral(app[HIS], app[CIPHER], referral.id) == number
    [his_patient] = his_patients(app, ID_NUMBER)
    assert his_patient["name"][0]["text"] == "陆文龙"
    [encounter] = admissions(app, referral.code)
    assert encounter["status"] == "planned" and encounter["class"]["code"] == "IMP"
    assert encounter["subject"]["reference"] == f"Patient/{his_patient['id']}"
    assert encounter["serviceType"]["coding"][0]["code"] == "NEUR"
    assert encounter["reasonCode"][0]["coding"][0]["code"] == "I63.9"
    assert encounter["hospitalization"]["origin"]["identifier"]["value"] == "GAOYOU"
    stored = await Referral.get(id=referral.id)
    assert stored.admission_certificate_no == number and stored.his_sync == HisSync.DONE
    mrn = {i["system"]: i["value"] for i in his_patient["identifier"]}[profile.MRN_SYSTEM]
    subei = await Institution.get(code="SUBEI")
    assert await PatientIdentifier.filter(institution_id=subei.id, system="mrn", value=mrn,
                                          patient_id=stored.patient_id).count() == 1  # type: ignore[attr-defined]


async def test_a_cancelled_referral_gets_no_certificate(client):
    app = client.server.app
    await seeded(client)
    referral = await scheduled_referral(app, status=Status.CANCELLED)
    assert await admit_referral(app[HIS], app[CIPHER], referral.id) is None
    assert his_patients(app, ID_NUMBER) == [] and admissions(app, referral.code) == []


async def test_a_down_his_leaves_the_referral_for_a_retry(client):
    app = client.server.app
    await seeded(client)
    referral = await scheduled_referral(app)
    app[HIS_SIMULATOR].add_fault(Fault(kind="error500", remaining=1, institution="SUBEI", method="POST"))
    with pytest.raises(HisServerError):
        await admit_referral(app[HIS], app[CIPHER], referral.id)
    stored = await Referral.get(id=referral.id)
    assert stored.admission_certificate_no == "" and stored.his_sync == HisSync.PENDING
    number = await admit_referral(app[HIS], app[CIPHER], referral.id)
    assert len(his_patients(app, ID_NUMBER)) == 1 and len(admissions(app, referral.code)) == 1
    assert (await Referral.get(id=referral.id)).admission_certificate_no == number
