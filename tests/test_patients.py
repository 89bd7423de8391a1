"""POST /api/v1/scan and GET /api/v1/patients/me/card through the real app, against the embedded HIS
simulator (no mocks): scan by MRN, card code, ID number and the platform's own card token; the pre-fill
equals what the simulator holds; names that differ from the HIS master index are refused."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date

import jwt

from appkeys import CIPHER, HIS, HIS_SIMULATOR, SETTINGS
from his import profile
from his.admission import patient_demographics
from his.simulator import Fault
from models import AuditEvent, Institution, Patient, PatientIdentifier
from qr.patient_card import issue_card
from security.idcard import make_id_number
from tests.referral_support import Desk, bind_family, bind_patient
from tests.support import bearer, login_demo, read_qr, seeded

UNKNOWN_ID = make_id_number("321002", date(1950, 2, 2), 555)
BAD_CHECK_DIGIT = UNKNOWN_ID[:17] + ("1" if UNKNOWN_ID[17] != "1" else "2")


def sim(client):
    return client.server.app[HIS_SIMULATOR]


def his_person(client, code: str = "SUBEI", *, with_encounter: bool = True) -> dict:
    return next(p for p in sim(client).store(code).demo_listing() if p["open_encounter"] is with_encounter)


def expected_prefill(client, code: str, person: dict) -> dict:
    """The pre-fill as the simulator's store holds it for the person's open encounter."""
    store = sim(client).store(code)
    ref = f"Patient/{person['id']}"
    encounter = next(e for e in store.all("Encounter") if e["subject"]["reference"] == ref
                     and e["status"] == "in-progress")
    ext = {x["url"]: x["valueString"] for x in encounter["extension"]}
    diagnoses = [{"code": c["code"]["coding"][0]["code"], "name": c["code"]["coding"][0]["display"]}
                 for c in store.all("Condition") if c["encounter"]["reference"] == f"Encounter/{encounter['id']}"]
    reports = sorted((r for r in store.all("DiagnosticReport") if r["subject"]["reference"] == ref),
                     key=lambda r: r["issued"], reverse=True)
    return {"diagnoses": diagnoses, "chief_complaint": ext[profile.EXT_CHIEF_COMPLAINT],
            "present_illness": ext[profile.EXT_PRESENT_ILLNESS], "past_history": ext[profile.EXT_PAST_HISTORY],
            "allergies": ext[profile.EXT_ALLERGIES], "treatment": ext[profile.EXT_TREATMENT],
            "recent_results": [r["conclusion"] for r in reports]}


def assert_prefill_matches(prefill: dict, expected: dict) -> None:
    assert prefill["diagnoses"] == expected["diagnoses"] and prefill["diagnoses"]
    for field in ("chief_complaint", "present_illness", "past_history", "allergies", "treatment"):
        assert prefill[field] == expected[field], field
    lines = prefill["recent_results"].split("\n")
    assert len(lines) == len(expected["recent_results"])
    for line, conclusion in zip(lines, expected["recent_results"], strict=True):
        assert line.endswith(conclusion)
    assert prefill["referral_reason"] == "" and prefill["precautions"] == ""


async def doctor(client, code: str = "SUBEI") -> dict:
    await seeded(client)
    return await login_demo(client, code, "doctor")


async def scan(client, session: dict, content: str):
    return await client.post("/api/v1/scan", json={"content": content}, headers=bearer(session))


async def bind(client, openid: str, name: str, id_number: str) -> dict:
    """The patient binds their own account, proven by the phone on file (recorded on the platform first if new)."""
    return await bind_patient(client, openid, name, id_number)


# ------------------------------------------------------------------------------------------- scanning

async def test_scan_by_mrn_records_the_patient_and_prefills_from_the_his(client):
    session = await doctor(client)
    person = his_person(client)
    resp = await scan(client, session, person["mrn"])
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["resolved_by"] == "mrn" and body["created"] is True
    patient = body["patient"]
    assert patient["name"] != person["name"] and patient["name"][0] == person["name"][0] and "*" in patient["name"]
    assert patient["id_number"] == person["id_number"][:4] + "*" * 10 + person["id_number"][-4:]
    assert patient["phone"].count("*") == 4 and patient["verified"] is True
    assert patient["gender"] == person["gender"] and patient["birth_date"] == person["birth_date"]
    assert body["his"]["institution"]["code"] == "SUBEI" and body["his"]["mrn"] == person["mrn"]
    assert body["his"]["card_code"] == person["card_code"]
    assert sorted((i["system"], i["value"]) for i in body["identifiers"]) == [
        ("card", person["card_code"]), ("mrn", person["mrn"])]
    assert_prefill_matches(body["prefill"], expected_prefill(client, "SUBEI", person))
    # Recorded once, real-name verified, with its numbers at SUBEI; the scan is audited without personal data.
    stored = await Patient.get(public_id=patient["id"])
    assert stored.name == person["name"] and stored.verified_at is not None
    subei = await Institution.get(code="SUBEI")
    assert await PatientIdentifier.filter(patient_id=stored.id, institution_id=subei.id).count() == 2
    event = await AuditEvent.filter(action="patient.scanned").order_by("-id").first()
    assert event.target_id == patient["id"] and event.detail == {"via": "mrn", "his": "SUBEI", "created": True}
    assert person["id_number"] not in str(event.detail) and person["name"] not in str(event.detail)


async def test_scanning_again_finds_the_same_platform_patient(client):
    session = await doctor(client)
    person = his_person(client)
    first = await (await scan(client, session, person["card_code"])).json()
    second = await (await scan(client, session, person["id_number"])).json()
    assert first["resolved_by"] == "his_card" and second["resolved_by"] == "id_number"
    assert first["created"] is True and second["created"] is False
    assert first["patient"]["id"] == second["patient"]["id"]
    assert first["prefill"] == second["prefill"]
    assert await Patient.all().count() == 1


async def test_scan_by_id_number_prefills_from_the_his(client):
    session = await doctor(client, "GAOYOU")
    person = his_person(client, "GAOYOU")
    resp = await scan(client, session, person["id_number"].lower())
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["resolved_by"] == "id_number" and body["his"]["institution"]["code"] == "GAOYOU"
    assert_prefill_matches(body["prefill"], expected_prefill(client, "GAOYOU", person))


async def test_a_patient_without_open_encounter_is_recorded_with_an_empty_prefill(client):
    session = await doctor(client)
    person = his_person(client, with_encounter=False)
    body = await (await scan(client, session, person["mrn"])).json()
    assert body["created"] is True and body["his"]["encounter_id"] == ""
    assert body["prefill"]["diagnoses"] == [] and body["prefill"]["chief_complaint"] == ""


async def test_another_members_card_is_read_there_only_when_a_referral_involves_the_doctors_institution(client):
    session = await doctor(client, "SUBEI")
    person = his_person(client, "BAOYING")
    baoying = await Institution.get(code="BAOYING")

    # Nothing involves SUBEI with this patient: BAOYING's HIS is not read, and the doctor is told why.
    resp = await scan(client, session, person["card_code"])
    body = await resp.json()
    assert resp.status == 403 and body["error"]["code"] == "CROSS_INSTITUTION_READ_REFUSED", body
    assert "宝应" in body["error"]["message"] and "转诊" in body["error"]["message"]
    assert not await PatientIdentifier.filter(institution_id=baoying.id).exists()
    assert not await AuditEvent.filter(action="his.cross_institution_read").exists()

    # BAOYING records the patient and drafts a referral to SUBEI: a draft does not involve SUBEI yet.
    desk = Desk(client)
    own = await (await scan(client, await login_demo(client, "BAOYING", "doctor"), person["mrn"])).json()
    draft = await desk.ok(await desk.create("BAOYING", own["patient"]["id"], "SUBEI", "CARD"), 201)
    resp = await scan(client, session, person["card_code"])
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "CROSS_INSTITUTION_READ_REFUSED"

    # Submitted, the referral involves SUBEI: the card is read at BAOYING, and the read is audited.
    await desk.ok(await desk.post(("BAOYING", "doctor"), draft["id"], "submit"))
    resp = await scan(client, session, person["card_code"])
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["patient"]["id"] == own["patient"]["id"] and body["resolved_by"] == "his_card"
    assert body["his"]["institution"]["code"] == "BAOYING" and body["his"]["mrn"] == person["mrn"]
    assert body["identifiers"] == []  # SUBEI has no number for this patient
    assert_prefill_matches(body["prefill"], expected_prefill(client, "BAOYING", person))
    subei = await Institution.get(code="SUBEI")
    [event] = await AuditEvent.filter(action="his.cross_institution_read")
    assert event.institution_id == subei.id and event.target_id == own["patient"]["id"]
    assert event.detail == {"his": "BAOYING", "purpose": "scan", "referral": draft["code"]}
    assert event.actor_staff_id is not None

    # The bare MRN of another institution is not looked up there: only its prefixed card code names it.
    resp = await scan(client, session, person["mrn"])
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "PATIENT_NOT_FOUND"


async def test_a_consultation_about_the_patient_also_opens_the_other_members_his(client):
    from tests.consult_support import request_consultation

    session = await doctor(client, "SUBEI")
    person = his_person(client, "BAOYING")
    desk = Desk(client)
    own = await (await scan(client, await login_demo(client, "BAOYING", "doctor"), person["mrn"])).json()
    assert (await scan(client, session, person["card_code"])).status == 403  # nothing involves SUBEI yet
    # BAOYING asks SUBEI's cardiology pool for a cloud consultation about the patient: that involves SUBEI.
    consultation = await desk.ok(await request_consultation(desk, patient=own, source="BAOYING"), 201)
    resp = await scan(client, session, person["card_code"])
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["his"]["institution"]["code"] == "BAOYING"
    [event] = await AuditEvent.filter(action="his.cross_institution_read")
    assert event.detail == {"his": "BAOYING", "purpose": "scan", "consultation": consultation["code"]}
    # A third member the consultation does not involve still reads nothing there.
    resp = await scan(client, await doctor(client, "GAOYOU"), person["card_code"])
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "CROSS_INSTITUTION_READ_REFUSED"


async def test_another_members_card_resolves_through_the_doctors_own_his_by_identity(client):
    session = await doctor(client, "GAOYOU")
    person = his_person(client, "BAOYING")
    own = await (await scan(client, await login_demo(client, "BAOYING", "doctor"), person["mrn"])).json()
    # The patient is also registered at GAOYOU, under GAOYOU's own numbers.
    patient = await Patient.get(public_id=own["patient"]["id"])
    gaoyou = await Institution.get(code="GAOYOU")
    app = client.server.app
    mrn = await app[HIS].register_patient(gaoyou, patient_demographics(patient, app[CIPHER]))
    resp = await scan(client, session, person["card_code"])
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["patient"]["id"] == own["patient"]["id"]
    assert body["his"]["institution"]["code"] == "GAOYOU" and body["his"]["mrn"] == mrn
    assert ("mrn", mrn) in [(i["system"], i["value"]) for i in body["identifiers"]]
    assert not await AuditEvent.filter(action="his.cross_institution_read").exists()


async def test_unknown_and_malformed_codes_get_messages_a_doctor_understands(client):
    session = await doctor(client)
    cases = [
        ("99999999", 404, "PATIENT_NOT_FOUND"),
        ("SUBEI-99999999", 404, "PATIENT_NOT_FOUND"),
        ("GAOYOU-99999999", 403, "CROSS_INSTITUTION_READ_REFUSED"),
        ("NOSUCHH-12345678", 404, "CARD_INSTITUTION_UNKNOWN"),
        (UNKNOWN_ID, 404, "PATIENT_NOT_FOUND"),
        (BAD_CHECK_DIGIT, 422, "INVALID_ID_NUMBER"),
        ("https://example.com/?q=1", 422, "UNRECOGNIZED_CODE"),
        ("张三", 422, "UNRECOGNIZED_CODE"),
        ("12", 422, "UNRECOGNIZED_CODE"),
        ("   ", 422, "UNRECOGNIZED_CODE"),
    ]
    for content, status, code in cases:
        resp = await scan(client, session, content)
        body = await resp.json()
        assert resp.status == status, (content, body)
        assert body["error"]["code"] == code, (content, body)
        assert body["error"]["message"] and not body["error"]["message"].isascii()
    resp = await client.post("/api/v1/scan", json={"content": "x" * 2000}, headers=bearer(session))
    assert resp.status == 422


async def test_a_name_that_differs_from_the_his_master_index_is_refused(client):
    session = await doctor(client)
    person = his_person(client)
    # The patient bound themself on the platform under another name than their HIS records.
    await bind(client, "o_wrong_name", "王小二", person["id_number"])
    resp = await scan(client, session, person["mrn"])
    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "NAME_MISMATCH"
    assert "姓名" in body["error"]["message"] and "HIS" in body["error"]["message"]
    assert not await PatientIdentifier.all().exists()


async def test_only_doctors_may_scan(client):
    await seeded(client)
    person = his_person(client)
    assert (await client.post("/api/v1/scan", json={"content": person["mrn"]})).status == 401
    approver = await login_demo(client, "SUBEI", "approver")
    resp = await scan(client, approver, person["mrn"])
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "ROLE_REQUIRED"
    patient = await bind(client, "o_patient_scan", person["name"], person["id_number"])
    assert (await scan(client, patient, person["mrn"])).status == 403


async def test_a_down_his_is_a_503_not_a_hang_or_a_500(client):
    session = await doctor(client)
    person = his_person(client)
    sim(client).add_fault(Fault(kind="error500", remaining=10, institution="SUBEI"))
    started = time.monotonic()
    resp = await scan(client, session, person["mrn"])
    assert resp.status == 503
    body = await resp.json()
    assert body["error"]["code"] == "HIS_SERVER_ERROR" and "HIS" in body["error"]["message"]
    assert time.monotonic() - started < client.server.app[SETTINGS].his_timeout
    sim(client).faults.clear()
    sim(client).add_fault(Fault(kind="outcome", remaining=1, institution="SUBEI", message="前置机维护中"))
    resp = await scan(client, session, person["mrn"])
    assert resp.status == 422 and "前置机维护中" in (await resp.json())["error"]["message"]


# ----------------------------------------------------------------------------------- the patient card

def decode_png(data_url: str) -> str:
    return read_qr(data_url).text


async def test_the_patient_card_is_a_signed_token_without_personal_data_and_its_qr(client):
    await seeded(client)
    person = his_person(client)
    session = await bind(client, "o_card_owner", person["name"], person["id_number"])
    resp = await client.get("/api/v1/patients/me/card", headers=bearer(session))
    assert resp.status == 200, await resp.text()
    card = await resp.json()
    assert decode_png(card["qr_png"]) == card["token"]
    assert 0 < card["expires_in"] <= 600
    claims = jwt.decode(card["token"], options={"verify_signature": False})
    assert set(claims) == {"sub", "iat", "exp"}
    assert claims["sub"] == card["patient"]["id"] == session["account"]["patients"][0]["id"]
    assert jwt.get_unverified_header(card["token"])["typ"] == "rc-patient-card"
    assert person["name"] not in card["token"] and person["id_number"] not in card["token"]
    assert card["patient"]["relation"] == "self"
    assert card["patient"]["name"] == session["account"]["patients"][0]["name"]


async def test_a_doctor_scanning_the_card_gets_the_patient_and_the_prefill(client):
    session = await doctor(client)
    person = his_person(client)
    owner = await bind(client, "o_card_scan", person["name"], person["id_number"])
    card = await (await client.get("/api/v1/patients/me/card", headers=bearer(owner))).json()
    resp = await scan(client, session, decode_png(card["qr_png"]))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["resolved_by"] == "patient_card" and body["created"] is False
    assert body["patient"]["id"] == owner["account"]["patients"][0]["id"]
    assert body["his"]["mrn"] == person["mrn"]
    assert_prefill_matches(body["prefill"], expected_prefill(client, "SUBEI", person))


async def test_a_card_of_a_patient_no_his_here_knows_resolves_without_prefill(client):
    session = await doctor(client)
    id_number = make_id_number("321084", date(1988, 8, 8), 88)
    owner = await bind(client, "o_card_unknown", "马可", id_number)
    card = await (await client.get("/api/v1/patients/me/card", headers=bearer(owner))).json()
    body = await (await scan(client, session, card["token"])).json()
    assert body["patient"]["id"] == owner["account"]["patients"][0]["id"]
    assert body["his"] is None and body["prefill"]["diagnoses"] == []
    # The ID number of a platform patient unknown to this HIS resolves the same way.
    body = await (await scan(client, session, id_number)).json()
    assert body["resolved_by"] == "id_number" and body["patient"]["id"] == owner["account"]["patients"][0]["id"]


async def test_a_card_whose_holder_is_named_differently_in_the_his_is_refused(client):
    session = await doctor(client)
    person = his_person(client)
    owner = await bind(client, "o_card_mismatch", "王小二", person["id_number"])
    card = await (await client.get("/api/v1/patients/me/card", headers=bearer(owner))).json()
    resp = await scan(client, session, card["token"])
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "NAME_MISMATCH"


async def test_expired_forged_and_foreign_card_tokens_are_refused(client):
    session = await doctor(client)
    secret = client.server.app[SETTINGS].jwt_secret
    patient_id = uuid.uuid4()
    expired = issue_card(secret, patient_id, ttl=60, now=time.time() - 3600).token
    forged = issue_card("another-installation-secret", patient_id).token
    header, payload, signature = issue_card(secret, patient_id).token.split(".")
    tampered = ".".join([header, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")])
    unknown_patient = issue_card(secret, patient_id).token
    for token, status, code in ((expired, 422, "PATIENT_CARD_EXPIRED"), (forged, 422, "PATIENT_CARD_KEY_UNKNOWN"),
                                (tampered, 422, "PATIENT_CARD_INVALID"), (unknown_patient, 404, "PATIENT_NOT_FOUND")):
        resp = await scan(client, session, token)
        body = await resp.json()
        assert (resp.status, body["error"]["code"]) == (status, code), body


async def test_the_card_is_only_for_bound_patients_and_their_own_family(client):
    await seeded(client)
    staff = await login_demo(client, "SUBEI", "doctor")
    resp = await client.get("/api/v1/patients/me/card", headers=bearer(staff))
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "PATIENT_BINDING_REQUIRED"
    assert (await client.get("/api/v1/patients/me/card")).status == 401
    me = make_id_number("321002", date(1990, 1, 1), 11)
    mother = make_id_number("321002", date(1962, 6, 6), 22)
    await bind(client, "o_family", "赵一", me)
    mother_session = await bind(client, "o_mother", "钱母", mother)
    session = await bind_family(client, "o_family", "钱母", mother, "parent", mother_session)
    patients = {p["relation"]: p["id"] for p in session["account"]["patients"]}
    default = await (await client.get("/api/v1/patients/me/card", headers=bearer(session))).json()
    assert default["patient"]["id"] == patients["self"]
    chosen = await (await client.get(f"/api/v1/patients/me/card?patient_id={patients['parent']}",
                                     headers=bearer(session))).json()
    assert chosen["patient"]["id"] == patients["parent"] and chosen["patient"]["relation_name"] == "父母"
    stranger = await bind(client, "o_stranger_card", "孙三", make_id_number("321002", date(1975, 5, 5), 33))
    resp = await client.get(f"/api/v1/patients/me/card?patient_id={patients['self']}", headers=bearer(stranger))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "PATIENT_NOT_BOUND"
    resp = await client.get("/api/v1/patients/me/card?patient_id=not-a-uuid", headers=bearer(session))
    assert resp.status == 422


async def test_concurrent_scans_of_a_new_patient_record_them_once(client):
    session = await doctor(client)
    person = his_person(client)
    responses = await asyncio.gather(*(scan(client, session, code) for code in
                                       (person["mrn"], person["card_code"], person["id_number"], person["mrn"])))
    bodies = [await r.json() for r in responses]
    assert [r.status for r in responses] == [200] * 4, bodies
    assert len({b["patient"]["id"] for b in bodies}) == 1
    assert sum(b["created"] for b in bodies) == 1
    assert await Patient.all().count() == 1
    assert await PatientIdentifier.all().count() == 2
