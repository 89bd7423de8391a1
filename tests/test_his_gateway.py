"""The FHIR R4 adapter against the HIS simulator over real HTTP: lookups, identity checks, conditional
creates, admissions, orders and reports, faults as typed errors, deadlines, and R4 validation."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from aiohttp import web
from fhir.resources.R4B import get_fhir_model_class

from his import profile
from his.fhir import FhirGateway
from his.gateway import (
    AdmissionChange,
    AdmissionRequest,
    Diagnosis,
    Discharge,
    GatewayRouter,
    HisAuthFailed,
    HisBusy,
    HisEndpoint,
    HisNotConfigured,
    HisNotFound,
    HisProtocolError,
    HisRejected,
    HisServerError,
    HisTimeout,
    HisUnreachable,
    IdentityMatch,
    Order,
    PatientDemographics,
)
from his.simulator import Fault, SimulatorState, create_simulator_app
from security.idcard import make_id_number

CODE = "SUBEI"
OTHER = "GAOYOU"
TIMEOUT = 0.6


@pytest.fixture
def state() -> SimulatorState:
    return SimulatorState(report_delay=0)


@pytest.fixture
async def server(aiohttp_server, state):
    return await aiohttp_server(create_simulator_app(state))


@pytest.fixture
async def gateway():
    gw = FhirGateway(timeout=TIMEOUT, retry_backoff=0.01)
    yield gw
    await gw.close()


def endpoint(server, code: str = CODE) -> HisEndpoint:
    return HisEndpoint(code, str(server.make_url(f"/his-sim/{code}/fhir")))


def seeded(state: SimulatorState, code: str = CODE, *, with_encounter: bool = True) -> dict:
    return next(p for p in state.store(code).demo_listing() if p["open_encounter"] is with_encounter)


def new_person(seq: int = 101, name: str = "钱学森") -> PatientDemographics:
    return PatientDemographics(name=name, id_number=make_id_number("321002", date(1966, 3, 9), seq),
                               gender="male", birth_date=date(1966, 3, 9), phone="13912345678",
                               address="江苏省扬州市广陵区文昌中路1号")


def expected_summary(state: SimulatorState, code: str, patient_id: str) -> dict:
    """What the simulator holds for the patient's open encounter, read straight from its store."""
    store = state.store(code)
    encounter = next(e for e in store.all("Encounter")
                     if e["subject"]["reference"] == f"Patient/{patient_id}" and e["status"] == "in-progress")
    ext = {x["url"]: x["valueString"] for x in encounter["extension"]}
    conditions = [c for c in store.all("Condition") if c["encounter"]["reference"] == f"Encounter/{encounter['id']}"]
    return {
        "encounter_id": encounter["id"],
        "diagnoses": [Diagnosis(c["code"]["coding"][0]["code"], c["code"]["coding"][0]["display"])
                      for c in conditions],
        "chief_complaint": ext[profile.EXT_CHIEF_COMPLAINT],
        "present_illness": ext[profile.EXT_PRESENT_ILLNESS],
        "past_history": ext[profile.EXT_PAST_HISTORY],
        "allergies": ext[profile.EXT_ALLERGIES],
        "treatment": ext[profile.EXT_TREATMENT],
        "department": encounter["serviceType"]["text"],
    }


# ------------------------------------------------------------------------------------------ lookups

@pytest.mark.parametrize("field", ["card_code", "mrn", "id_number"])
async def test_lookup_resolves_card_code_mrn_and_id_number_to_the_simulator_record(server, state, gateway, field):
    person = seeded(state)
    record = await gateway.lookup_patient(endpoint(server), person[field])
    demo = record.demographics
    assert (demo.name, demo.mrn, demo.card_code, demo.id_number) == (
        person["name"], person["mrn"], person["card_code"], person["id_number"])
    assert demo.gender == person["gender"] and demo.birth_date.isoformat() == person["birth_date"]
    expected = expected_summary(state, CODE, person["id"])
    summary = record.summary
    assert summary.encounter_id == expected["encounter_id"]
    assert summary.diagnoses == expected["diagnoses"] and summary.diagnoses
    assert summary.chief_complaint == expected["chief_complaint"]
    assert summary.present_illness == expected["present_illness"]
    assert summary.past_history == expected["past_history"]
    assert summary.allergies == expected["allergies"]
    assert summary.treatment == expected["treatment"]
    assert summary.department == expected["department"]
    reports = [r for r in state.store(CODE).all("DiagnosticReport")
               if r["subject"]["reference"] == f"Patient/{person['id']}"]
    assert len(summary.recent_results) == len(reports) >= 1
    assert all(any(r["conclusion"] in line for line in summary.recent_results) for r in reports)


async def test_lookup_of_a_patient_without_open_encounter_has_demographics_and_an_empty_summary(
        server, state, gateway):
    person = seeded(state, with_encounter=False)
    record = await gateway.lookup_patient(endpoint(server), person["card_code"])
    assert record.demographics.mrn == person["mrn"]
    assert record.summary.encounter_id == "" and record.summary.diagnoses == []
    assert record.summary.chief_complaint == ""


async def test_lookup_of_unknown_or_malformed_codes_raises_his_not_found(server, gateway):
    for code in ("99999999", "SUBEI-99999999", make_id_number("321002", date(1950, 1, 1), 999), "a b|c,d"):
        with pytest.raises(HisNotFound) as caught:
            await gateway.lookup_patient(endpoint(server), code)
        assert caught.value.status == 404 and caught.value.institution == CODE


async def test_another_institutions_card_code_is_only_known_to_that_institution(server, state, gateway):
    person = seeded(state, OTHER)
    with pytest.raises(HisNotFound):
        await gateway.lookup_patient(endpoint(server, CODE), person["card_code"])
    record = await gateway.lookup_patient(endpoint(server, OTHER), person["card_code"])
    assert record.demographics.mrn == person["mrn"]


async def test_verify_identity_against_the_master_index(server, state, gateway):
    person = seeded(state)
    ep = endpoint(server)
    assert await gateway.verify_identity(ep, person["id_number"], person["name"]) is IdentityMatch.MATCH
    assert await gateway.verify_identity(ep, person["id_number"].lower(), f" {person['name']} ") \
        is IdentityMatch.MATCH
    assert await gateway.verify_identity(ep, person["id_number"], "李四") is IdentityMatch.MISMATCH
    assert await gateway.verify_identity(ep, new_person().id_number, "钱学森") is IdentityMatch.UNKNOWN
    assert await gateway.verify_identity(ep, "not-an-id", "钱学森") is IdentityMatch.UNKNOWN


# ------------------------------------------------------------------------------------- registration

async def test_registering_the_same_patient_twice_yields_one_his_patient(server, state, gateway):
    person = new_person()
    first = await gateway.register_patient(endpoint(server), person)
    second = await gateway.register_patient(endpoint(server), person)
    assert first == second and int(first) >= 60000001
    matches = [p for p in state.store(CODE).all("Patient")
               if any(i["value"] == person.id_number for i in p["identifier"])]
    assert len(matches) == 1
    # The HIS printed a card for the new patient that names the institution.
    record = await gateway.lookup_patient(endpoint(server), profile.card_code(CODE, first))
    assert record.demographics.name == "钱学森" and record.demographics.id_number == person.id_number
    assert record.demographics.phone == "13912345678"


async def test_concurrent_registrations_of_one_patient_make_one_his_patient(server, state, gateway):
    person = new_person(seq=203, name="邓稼先")
    mrns = await asyncio.gather(*(gateway.register_patient(endpoint(server), person) for _ in range(5)))
    assert len(set(mrns)) == 1
    assert sum(1 for p in state.store(CODE).all("Patient")
               if any(i["value"] == person.id_number for i in p["identifier"])) == 1


async def test_registering_a_patient_the_his_already_knows_returns_its_mrn(server, state, gateway):
    person = seeded(state)
    mrn = await gateway.register_patient(endpoint(server), PatientDemographics(
        name=person["name"], id_number=person["id_number"], gender=person["gender"]))
    assert mrn == person["mrn"]


# -------------------------------------------------------------------------------------- admissions

def admission(mrn: str, referral_code: str = "ZZ20260101-0001") -> AdmissionRequest:
    return AdmissionRequest(
        referral_code=referral_code, patient_mrn=mrn, department_code="NEUR", department_name="神经内科",
        planned_date=date(2026, 12, 3), diagnoses=[Diagnosis("I63.9", "脑梗死"), Diagnosis("I10", "原发性高血压")],
        source_institution_code="DONGGUAN", source_institution_name="扬州市东关街道社区卫生服务中心",
        referring_doctor="王建国", reason="病情加重，需上级医院溶栓评估", ward="神经内科病区", bed="12床")


async def test_an_admission_creates_exactly_one_planned_inpatient_encounter(server, state, gateway):
    mrn = await gateway.register_patient(endpoint(server), new_person())
    number = await gateway.create_admission(endpoint(server), admission(mrn))
    again = await gateway.create_admission(endpoint(server), admission(mrn))
    assert number == again and number.startswith("ZY")
    encounters = [e for e in state.store(CODE).all("Encounter")
                  if any(i.get("system") == profile.REFERRAL_SYSTEM for i in e.get("identifier", []))]
    assert len(encounters) == 1
    encounter = encounters[0]
    assert encounter["status"] == "planned" and encounter["class"]["code"] == "IMP"
    assert {i["system"]: i["value"] for i in encounter["identifier"]}[profile.CERTIFICATE_SYSTEM] == number
    assert [c["coding"][0]["code"] for c in encounter["reasonCode"]] == ["I63.9", "I10"]
    assert encounter["serviceType"]["coding"][0]["code"] == "NEUR"
    assert encounter["period"]["start"] == "2026-12-03"
    assert encounter["hospitalization"]["origin"]["identifier"]["value"] == "DONGGUAN"
    assert encounter["participant"][0]["individual"]["display"] == "王建国"
    patient = next(p for p in state.store(CODE).all("Patient")
                   if {i["system"]: i["value"] for i in p["identifier"]}.get(profile.MRN_SYSTEM) == mrn)
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
    other = await gateway.create_admission(endpoint(server), admission(mrn, "ZZ20260101-0002"))
    assert other != number


async def test_an_admission_for_an_unknown_mrn_raises_not_found(server, gateway):
    with pytest.raises(HisNotFound):
        await gateway.create_admission(endpoint(server), admission("77777777"))


async def test_an_admission_is_moved_then_cancelled_and_an_unknown_one_is_none(server, state, gateway):
    mrn = await gateway.register_patient(endpoint(server), new_person())
    number = await gateway.create_admission(endpoint(server), admission(mrn))
    moved = AdmissionChange(referral_code="ZZ20260101-0001", planned_date=date(2026, 12, 8), department_code="CARD",
                            department_name="心血管内科", ward="心内二病区")
    assert await gateway.update_admission(endpoint(server), moved) == number
    [encounter] = [e for e in state.store(CODE).all("Encounter")
                   if any(i.get("value") == "ZZ20260101-0001" for i in e.get("identifier", []))]
    assert (encounter["status"], encounter["period"]["start"], encounter["meta"]["versionId"]) == \
        ("planned", "2026-12-08", "2")
    assert encounter["serviceType"]["coding"][0]["code"] == "CARD"
    assert encounter["location"][0]["location"]["display"] == "心内二病区"
    assert encounter["participant"][0]["individual"]["display"] == "王建国"  # the rest is left as it was
    assert await gateway.update_admission(endpoint(server), moved) == number  # already so: no second write
    assert state.store(CODE).read("Encounter", encounter["id"])["meta"]["versionId"] == "2"
    cancel = AdmissionChange(referral_code="ZZ20260101-0001", cancelled=True)
    assert await gateway.update_admission(endpoint(server), cancel) == number
    assert state.store(CODE).read("Encounter", encounter["id"])["status"] == "cancelled"
    assert await gateway.update_admission(endpoint(server), AdmissionChange(referral_code="ZZ-NONE")) is None


async def test_an_admission_the_his_has_started_is_not_changed(server, state, gateway):
    mrn = await gateway.register_patient(endpoint(server), new_person())
    await gateway.create_admission(endpoint(server), admission(mrn))
    store = state.store(CODE)
    [encounter] = [e for e in store.all("Encounter")
                   if any(i.get("value") == "ZZ20260101-0001" for i in e.get("identifier", []))]
    store.resources["Encounter"][encounter["id"]] = dict(encounter, status="in-progress")  # admitted at the desk
    with pytest.raises(HisRejected, match="已在医院信息系统"):
        await gateway.update_admission(endpoint(server), AdmissionChange(referral_code="ZZ20260101-0001",
                                                                         cancelled=True))


async def test_an_admission_goes_in_progress_then_finished_with_the_summary_and_never_back(server, state, gateway):
    mrn = await gateway.register_patient(endpoint(server), new_person())
    number = await gateway.create_admission(endpoint(server), admission(mrn))
    admitted_at = datetime(2026, 12, 1, 1, 30, tzinfo=UTC)
    admitted = AdmissionChange(referral_code="ZZ20260101-0001", admitted_at=admitted_at)
    assert await gateway.update_admission(endpoint(server), admitted) == number
    [encounter] = [e for e in state.store(CODE).all("Encounter")
                   if any(i.get("value") == "ZZ20260101-0001" for i in e.get("identifier", []))]
    assert (encounter["status"], encounter["period"]) == ("in-progress", {"start": "2026-12-01T09:30:00+08:00"})
    discharge = Discharge(discharged_at=datetime(2026, 12, 9, 2, 0, tzinfo=UTC), diagnosis="冠心病",
                          recommendations="回社区随访")
    finished = AdmissionChange(referral_code="ZZ20260101-0001", admitted_at=admitted_at, discharge=discharge)
    assert await gateway.update_admission(endpoint(server), finished) == number
    assert await gateway.update_admission(endpoint(server), finished) == number  # already so: no second write
    stored = state.store(CODE).read("Encounter", encounter["id"])
    assert (stored["status"], stored["meta"]["versionId"]) == ("finished", "3")
    assert stored["period"] == {"start": "2026-12-01T09:30:00+08:00", "end": "2026-12-09T10:00:00+08:00"}
    assert {e["url"]: e["valueString"] for e in stored["extension"] if e["url"] in profile.DISCHARGE_EXTENSIONS} \
        == {profile.EXT_DISCHARGE_DIAGNOSIS: "冠心病", profile.EXT_DISCHARGE_RECOMMENDATIONS: "回社区随访"}
    for backwards in (admitted, AdmissionChange(referral_code="ZZ20260101-0001", cancelled=True)):
        with pytest.raises(HisRejected, match="已在医院信息系统（HIS）中办理出院"):
            await gateway.update_admission(endpoint(server), backwards)


# ------------------------------------------------------------------------------- orders and reports

def lab_order(mrn: str, order_id: str = "ord-1") -> Order:
    return Order(order_id=order_id, patient_mrn=mrn, kind="lab", code="CBC", name="血常规", requester="王建国",
                 note="转诊前复查", referral_code="ZZ20260101-0001")


async def test_an_order_produces_a_report_that_list_reports_returns(server, state, gateway):
    person = seeded(state)
    started = datetime.now(UTC) - timedelta(seconds=1)
    placed = await gateway.place_order(endpoint(server), lab_order(person["mrn"]))
    assert placed.resource_type == "ServiceRequest" and placed.created
    reports = await gateway.list_reports(endpoint(server), person["mrn"], since=started)
    assert len(reports) == 1
    report = reports[0]
    assert report.order_id == "ord-1" and report.name == "血常规" and report.status == "final"
    assert report.category == "LAB" and "白细胞" in report.conclusion
    assert report.issued is not None and report.issued >= started
    # Without `since` the seeded results come too, newest first.
    everything = await gateway.list_reports(endpoint(server), person["mrn"])
    assert everything[0].order_id == "ord-1" and len(everything) > 1
    assert [r.issued for r in everything] == sorted((r.issued for r in everything), reverse=True)


async def test_reports_appear_after_the_simulated_lab_turnaround(server, state, gateway):
    state.report_delay = 0.3
    person = seeded(state)
    started = datetime.now(UTC) - timedelta(seconds=1)
    await gateway.place_order(endpoint(server), Order(order_id="ord-ct", patient_mrn=person["mrn"], kind="exam",
                                                      code="CT-HEAD", name="头颅CT平扫"))
    assert await gateway.list_reports(endpoint(server), person["mrn"], since=started) == []
    await asyncio.sleep(0.35)
    reports = await gateway.list_reports(endpoint(server), person["mrn"], since=started)
    assert [(r.order_id, r.category) for r in reports] == [("ord-ct", "RAD")]


async def test_placing_the_same_order_twice_makes_one_service_request(server, state, gateway):
    person = seeded(state)
    first = await gateway.place_order(endpoint(server), lab_order(person["mrn"], "ord-twice"))
    second = await gateway.place_order(endpoint(server), lab_order(person["mrn"], "ord-twice"))
    assert first.his_id == second.his_id and first.created and not second.created
    assert sum(1 for r in state.store(CODE).all("ServiceRequest")
               if r["identifier"][0]["value"] == "ord-twice") == 1


async def test_a_prescription_is_a_medication_request(server, state, gateway):
    person = seeded(state)
    placed = await gateway.place_order(endpoint(server), Order(
        order_id="rx-1", patient_mrn=person["mrn"], kind="prescription", code="ASP100", name="阿司匹林肠溶片",
        dosage="100 mg 口服 每日一次", quantity=30, unit="片"))
    assert placed.resource_type == "MedicationRequest"
    stored = state.store(CODE).read("MedicationRequest", placed.his_id)
    assert stored["medicationCodeableConcept"]["text"] == "阿司匹林肠溶片"
    assert stored["dosageInstruction"][0]["text"] == "100 mg 口服 每日一次"
    assert stored["dispenseRequest"]["quantity"] == {"value": 30, "unit": "片"}


# --------------------------------------------------------------------------------- faults and time

async def test_a_failing_read_is_retried_and_succeeds(server, state, gateway):
    person = seeded(state)
    state.add_fault(Fault(kind="error500", remaining=2, method="GET"))
    record = await gateway.lookup_patient(endpoint(server), person["mrn"])
    assert record.demographics.name == person["name"]
    assert state.faults == []


async def test_a_persistently_failing_read_raises_his_server_error(server, state, gateway):
    person = seeded(state)
    state.add_fault(Fault(kind="error500", remaining=10, method="GET"))
    with pytest.raises(HisServerError) as caught:
        await gateway.lookup_patient(endpoint(server), person["mrn"])
    assert isinstance(caught.value, HisUnreachable) and caught.value.status == 503
    assert state.faults[0].remaining == 7  # three attempts, no more


async def test_a_failing_write_is_not_retried(server, state, gateway):
    person = new_person(seq=305)
    state.add_fault(Fault(kind="error500", remaining=1, method="POST"))
    with pytest.raises(HisServerError):
        await gateway.register_patient(endpoint(server), person)
    assert not any(i["value"] == person.id_number for p in state.store(CODE).all("Patient")
                   for i in p["identifier"])
    # A retry by the caller is safe: the write is a conditional create.
    assert await gateway.register_patient(endpoint(server), person)


async def test_an_operation_outcome_surfaces_as_his_rejected_with_its_text(server, state, gateway):
    state.add_fault(Fault(kind="outcome", remaining=1, status=409, message="该患者存在未结算费用，暂不能办理入院"))
    with pytest.raises(HisRejected) as caught:
        await gateway.register_patient(endpoint(server), new_person(seq=307))
    assert caught.value.outcome == "该患者存在未结算费用，暂不能办理入院"
    assert caught.value.http_status == 409 and "未结算费用" in caught.value.message


async def test_faults_can_target_one_institution(server, state, gateway):
    state.add_fault(Fault(kind="outcome", remaining=1, institution=OTHER))
    person = seeded(state)
    assert (await gateway.lookup_patient(endpoint(server), person["mrn"])).demographics.mrn == person["mrn"]
    with pytest.raises(HisRejected):
        await gateway.lookup_patient(endpoint(server, OTHER), seeded(state, OTHER)["mrn"])


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_stalled_his_is_abandoned_within_the_timeout(server, state, gateway, method):
    state.add_fault(Fault(kind="timeout", remaining=5, delay=30, method=method))
    started = time.monotonic()
    with pytest.raises(HisTimeout) as caught:
        if method == "GET":
            await gateway.lookup_patient(endpoint(server), seeded(state)["mrn"])
        else:
            await gateway.register_patient(endpoint(server), new_person(seq=309))
    elapsed = time.monotonic() - started
    assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 0.4
    assert caught.value.code == "HIS_TIMEOUT" and caught.value.status == 503


async def test_an_unreachable_his_raises_his_unreachable_quickly(gateway):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(HisUnreachable) as caught:
        await gateway.lookup_patient(HisEndpoint(CODE, f"http://127.0.0.1:{port}/fhir"), "12345678")
    assert type(caught.value) is HisUnreachable
    assert time.monotonic() - started < TIMEOUT + 0.4


async def test_an_invalid_fhir_answer_raises_his_protocol_error(aiohttp_server, gateway):
    async def bad_bundle(request: web.Request) -> web.Response:
        bundle = {"resourceType": "Bundle", "type": "searchset",
                  "entry": [{"resource": {"resourceType": "Patient", "birthDate": "1990-13-01"}}]}
        return web.Response(text=json.dumps(bundle), content_type=profile.FHIR_JSON)

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>gateway error</html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/bad/fhir/Patient", bad_bundle)
    app.router.add_get("/html/fhir/Patient", not_json)
    server = await aiohttp_server(app)
    for path in ("/bad/fhir", "/html/fhir"):
        with pytest.raises(HisProtocolError):
            await gateway.lookup_patient(HisEndpoint(CODE, str(server.make_url(path))), "12345678")


# ------------------------------------------------------------------------------- FHIR R4 validation

async def test_the_resources_the_adapter_writes_round_trip_through_the_r4_validator(server, state, gateway):
    """Every resource shape the adapter sends, serialised as on the wire, validates as FHIR R4 (the R4B
    models) and survives the round trip unchanged; so do the copies the simulator stored."""
    mrn = await gateway.register_patient(endpoint(server), new_person())
    patient_id = next(p["id"] for p in state.store(CODE).all("Patient")
                      if {i["system"]: i["value"] for i in p["identifier"]}.get(profile.MRN_SYSTEM) == mrn)
    written = [
        gateway.patient_resource(new_person()),
        gateway.admission_resource(patient_id, admission(mrn)),
        gateway.order_resource(patient_id, lab_order(mrn)),
        gateway.order_resource(patient_id, Order(order_id="rx-2", patient_mrn=mrn, kind="prescription", code="MET",
                                                 name="二甲双胍片", dosage="0.5 g 口服 每日三次", quantity=60,
                                                 unit="片")),
        gateway.order_resource(patient_id, Order(order_id="tx-1", patient_mrn=mrn, kind="treatment", code="REHAB",
                                                 name="偏瘫肢体综合训练")),
    ]
    for resource in written:
        wire = json.loads(resource.model_dump_json(exclude_none=True))
        model = get_fhir_model_class(wire["resourceType"])
        again = model.model_validate(wire)
        assert json.loads(again.model_dump_json(exclude_none=True)) == wire
    assert [json.loads(r.model_dump_json())["resourceType"] for r in written] == [
        "Patient", "Encounter", "ServiceRequest", "MedicationRequest", "ServiceRequest"]

    await gateway.create_admission(endpoint(server), admission(mrn))
    await gateway.place_order(endpoint(server), lab_order(mrn))
    store = state.store(CODE)
    for resource_type in ("Patient", "Encounter", "Condition", "ServiceRequest", "DiagnosticReport"):
        for stored in store.all(resource_type):
            get_fhir_model_class(resource_type).model_validate(stored)


async def test_outgoing_resources_are_validated_before_sending(gateway):
    with pytest.raises(ValueError):
        gateway.order_resource("1", Order(order_id="x", patient_mrn="1", kind="surgery", code="X",  # type: ignore
                                          name="未知"))
    with pytest.raises(ValueError):
        gateway.patient_resource(PatientDemographics(name="", id_number=new_person().id_number))
    bad = admission("1")
    bad.referral_code = ""  # an empty identifier value is not valid FHIR
    with pytest.raises(ValueError):
        gateway.admission_resource("1", bad)


# ------------------------------------------------------------------------------------------ routing

async def test_the_router_resolves_empty_urls_to_the_fallback_and_refuses_unknown_schemes(server, state):
    fhir = FhirGateway(timeout=TIMEOUT)
    router = GatewayRouter({"http": fhir, "https": fhir},
                           fallback_base_url=lambda code: str(server.make_url(f"/his-sim/{code}/fhir")))
    try:
        person = seeded(state)
        record = await router.lookup_patient(HisEndpoint(CODE, ""), person["card_code"])
        assert record.demographics.mrn == person["mrn"]
        with pytest.raises(HisNotConfigured):
            await router.lookup_patient(HisEndpoint(CODE, "mllp://10.0.0.1:2575"), person["mrn"])
        bare = GatewayRouter({"http": fhir})
        with pytest.raises(HisNotConfigured) as caught:
            await bare.verify_identity(HisEndpoint(CODE, ""), person["id_number"], person["name"])
        assert caught.value.code == "HIS_NOT_CONFIGURED"
    finally:
        await router.close()


async def test_error_pages_without_an_operation_outcome_still_map_to_typed_errors(aiohttp_server, gateway):
    async def proxy_error(request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        return web.Response(status=status, text="<html><body>nginx</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{status}/fhir/Patient", proxy_error)
    server = await aiohttp_server(app)
    # A gateway's 502 is "busy" (retried later, with a Chinese message), a 500 is the HIS failing.
    expected = {500: HisServerError, 502: HisBusy, 429: HisBusy, 401: HisAuthFailed, 403: HisRejected,
                404: HisNotFound}
    for status, error in expected.items():
        with pytest.raises(error) as caught:
            await gateway.lookup_patient(HisEndpoint(CODE, str(server.make_url(f"/{status}/fhir"))), "12345678")
        assert type(caught.value) is error
    with pytest.raises(HisRejected) as caught:
        await gateway.lookup_patient(HisEndpoint(CODE, str(server.make_url("/403/fhir"))), "12345678")
    assert caught.value.outcome == "HTTP 403"


async def test_a_card_code_or_mrn_reading_wins_over_an_id_number_reading(server, state, gateway):
    """Issue 3's order: MRN/card code of the institution before an ID number. A HIS whose MRNs are 18 digits
    could hold one equal to another patient's ID number; the MRN's owner is the answer."""
    person = seeded(state)
    store = state.store(CODE)
    store._store("Patient", {"resourceType": "Patient", "name": [{"text": "吴十八"}],
                             "identifier": [{"system": profile.MRN_SYSTEM, "value": person["id_number"]}]})
    record = await gateway.lookup_patient(endpoint(server), person["id_number"])
    assert record.demographics.name == "吴十八" and record.demographics.mrn == person["id_number"]
