"""The HIS simulator as a FHIR R4 server: seeding, search, read, conditional create, faults, lab turnaround,
and the standalone `python -m his.simulator`."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from his import profile
from his.simulator import SimulatorState, create_simulator_app
from his.simulator.seed import SCENARIOS
from security.idcard import make_id_number, parse_id_number

ROOT = Path(__file__).resolve().parent.parent
FHIR = "application/fhir+json"


@pytest.fixture
def state() -> SimulatorState:
    return SimulatorState(report_delay=0)


@pytest.fixture
async def sim(aiohttp_client, state):
    return await aiohttp_client(create_simulator_app(state))


def patient_body(id_number: str, name: str = "孙思邈") -> dict:
    return {"resourceType": "Patient", "name": [{"text": name}], "gender": "male",
            "identifier": [{"system": profile.ID_NUMBER_SYSTEM, "value": id_number}]}


async def test_seeding_is_deterministic_per_code_and_realistic():
    first = SimulatorState().store("SUBEI").demo_listing()
    again = SimulatorState().store("SUBEI").demo_listing()
    other = SimulatorState().store("GAOYOU").demo_listing()
    assert first == again
    assert {p["id_number"] for p in first}.isdisjoint({p["id_number"] for p in other})
    assert len({p["mrn"] for p in first}) == len(first) == 9
    seen_codes = set()
    for person in first:
        parsed = parse_id_number(person["id_number"])  # valid GB 11643 check digit, plausible birth date
        assert parsed.gender == person["gender"]
        assert parsed.birth_date.isoformat() == person["birth_date"]
        assert person["card_code"] == f"SUBEI-{person['mrn']}"
        assert profile.parse_card_code(person["card_code"]) == ("SUBEI", person["mrn"])
        assert 2 <= len(person["name"]) <= 3
        seen_codes.update(d["code"] for d in person["diagnoses"])
    assert {"I63.9", "I21.9", "J18.9", "E11.9", "K35.8"} <= seen_codes
    assert sum(1 for p in first if not p["open_encounter"]) == 1
    assert all(s.chief_complaint and s.present_illness for s in SCENARIOS)


async def test_metadata_is_a_valid_capability_statement(sim):
    resp = await sim.get("/his-sim/ANY-CODE_1/fhir/metadata")
    assert resp.status == 200 and resp.content_type == FHIR
    statement = CapabilityStatement.model_validate(await resp.json())
    types = {r.type for r in statement.rest[0].resource}
    assert types == {"Patient", "Encounter", "Condition", "ServiceRequest", "MedicationRequest", "DiagnosticReport",
                     "Observation"}
    assert statement.fhirVersion == "4.0.1"


async def test_search_by_identifier_and_read_by_id(sim, state):
    person = state.store("SUBEI").demo_listing()[0]
    resp = await sim.get("/his-sim/SUBEI/fhir/Patient",
                         params={"identifier": f"{profile.ID_NUMBER_SYSTEM}|{person['id_number']}"})
    bundle = Bundle.model_validate(await resp.json())
    assert bundle.type == "searchset" and bundle.total == 1
    assert bundle.entry[0].resource.id == person["id"]
    by_value_only = await (await sim.get("/his-sim/SUBEI/fhir/Patient", params={"identifier": person["mrn"]})).json()
    assert by_value_only["total"] == 1
    wrong_system = await (await sim.get("/his-sim/SUBEI/fhir/Patient",
                                        params={"identifier": f"urn:other|{person['mrn']}"})).json()
    assert wrong_system["total"] == 0
    read = await sim.get(f"/his-sim/SUBEI/fhir/Patient/{person['id']}")
    assert read.status == 200 and (await read.json())["name"][0]["text"] == person["name"]
    missing = await sim.get("/his-sim/SUBEI/fhir/Patient/99999")
    assert missing.status == 404
    outcome = await missing.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "not-found"


async def test_unsupported_searches_and_types_are_refused_with_an_operation_outcome(sim):
    resp = await sim.get("/his-sim/SUBEI/fhir/Patient", params={"name": "张"})
    assert resp.status == 400 and (await resp.json())["issue"][0]["code"] == "not-supported"
    resp = await sim.get("/his-sim/SUBEI/fhir/Medication")
    assert resp.status == 404 and (await resp.json())["resourceType"] == "OperationOutcome"


async def test_conditional_create_returns_the_existing_patient(sim, state):
    id_number = make_id_number("321003", date(1971, 7, 7), 77)
    header = {"If-None-Exist": f"identifier={profile.ID_NUMBER_SYSTEM}|{id_number}", "Content-Type": FHIR}
    first = await sim.post("/his-sim/SUBEI/fhir/Patient", json=patient_body(id_number), headers=header)
    assert first.status == 201
    created = await first.json()
    assert first.headers["Location"].endswith(f"/Patient/{created['id']}/_history/1")
    mrn = {i["system"]: i["value"] for i in created["identifier"]}[profile.MRN_SYSTEM]
    second = await sim.post("/his-sim/SUBEI/fhir/Patient", json=patient_body(id_number), headers=header)
    assert second.status == 200 and (await second.json())["id"] == created["id"]
    ids = {i["system"]: i["value"] for i in created["identifier"]}
    assert ids[profile.CARD_SYSTEM] == f"SUBEI-{mrn}"
    assert sum(1 for p in state.store("SUBEI").all("Patient")
               if any(i["value"] == id_number for i in p["identifier"])) == 1
    minimal = await sim.post("/his-sim/SUBEI/fhir/Patient", json=patient_body(id_number),
                             headers={**header, "Prefer": "return=minimal"})
    assert minimal.status == 200 and await minimal.read() == b""


async def test_ambiguous_conditional_create_is_a_412(sim):
    header = {"If-None-Exist": "gender=male"}
    resp = await sim.post("/his-sim/SUBEI/fhir/Patient", json=patient_body("x"), headers=header)
    assert resp.status == 400  # gender is not a search parameter here: refused, not ignored
    header = {"If-None-Exist": f"identifier={profile.MRN_SYSTEM}|"}  # every patient has an MRN
    resp = await sim.post("/his-sim/SUBEI/fhir/Patient", json=patient_body("x"), headers=header)
    assert resp.status == 412 and (await resp.json())["issue"][0]["code"] == "duplicate"


async def test_invalid_resources_and_dangling_references_are_refused(sim):
    resp = await sim.post("/his-sim/SUBEI/fhir/Patient", json={"resourceType": "Patient", "birthDate": "1990-13-01",
                                                                "name": [{"text": "周树人"}]})
    assert resp.status == 400 and "birthDate" in (await resp.json())["issue"][0]["diagnostics"]
    resp = await sim.post("/his-sim/SUBEI/fhir/Patient", json={"resourceType": "Encounter"})
    assert resp.status == 400
    resp = await sim.post("/his-sim/SUBEI/fhir/Encounter", json={
        "resourceType": "Encounter", "status": "planned", "class": {"code": "IMP"},
        "subject": {"reference": "Patient/424242"}})
    assert resp.status == 422 and "Patient" in (await resp.json())["issue"][0]["diagnostics"]
    resp = await sim.post("/his-sim/SUBEI/fhir/Patient", data=b"{not json", headers={"Content-Type": FHIR})
    assert resp.status == 400


async def test_a_service_request_gets_its_report_after_the_turnaround(sim, state):
    state.report_delay = 0.25
    person = state.store("SUBEI").demo_listing()[0]
    order = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
             "identifier": [{"system": profile.ORDER_SYSTEM, "value": "o-77"}],
             "category": [{"coding": [{"system": profile.SNOMED_SYSTEM, "code": "108252007"}]}],
             "code": {"text": "肝功能"}, "subject": {"reference": f"Patient/{person['id']}"}}
    resp = await sim.post("/his-sim/SUBEI/fhir/ServiceRequest", json=order)
    assert resp.status == 201
    sr_id = (await resp.json())["id"]
    query = {"based-on": f"ServiceRequest/{sr_id}"}
    assert (await (await sim.get("/his-sim/SUBEI/fhir/DiagnosticReport", params=query)).json())["total"] == 0
    await asyncio.sleep(0.3)
    bundle = await (await sim.get("/his-sim/SUBEI/fhir/DiagnosticReport", params=query)).json()
    assert bundle["total"] == 1
    report = bundle["entry"][0]["resource"]
    assert report["basedOn"][0]["identifier"]["value"] == "o-77" and "ALT" in report["conclusion"]
    assert report["category"][0]["coding"][0]["code"] == "LAB"


async def test_faults_are_validated_listed_counted_and_cleared(sim, state):
    for bad in ({"kind": "explode"}, {"kind": "timeout", "count": 0}, {"kind": "timeout", "delay": -1},
                {"kind": "outcome", "status": 500}, {"kind": "error500", "method": "DELETE"}, ["kind"]):
        resp = await sim.post("/his-sim/_faults", json=bad)
        assert resp.status == 422, bad
    resp = await sim.post("/his-sim/_faults", json={"kind": "error500", "count": 2, "institution": "SUBEI"})
    assert resp.status == 201
    assert (await (await sim.get("/his-sim/_faults")).json())["items"][0]["remaining"] == 2
    assert (await sim.get("/his-sim/GAOYOU/fhir/metadata")).status == 200
    assert (await sim.get("/his-sim/SUBEI/fhir/metadata")).status == 500
    assert (await sim.get("/his-sim/SUBEI/fhir/metadata")).status == 500
    assert (await sim.get("/his-sim/SUBEI/fhir/metadata")).status == 200
    await sim.post("/his-sim/_faults", json={"kind": "outcome", "count": 3, "message": "床位已满"})
    resp = await sim.get("/his-sim/SUBEI/fhir/metadata")
    assert resp.status == 422 and (await resp.json())["issue"][0]["diagnostics"] == "床位已满"
    assert (await (await sim.delete("/his-sim/_faults")).json())["items"] == []
    assert state.faults == []
    assert (await sim.get("/his-sim/SUBEI/fhir/metadata")).status == 200


async def test_a_timeout_fault_stalls_the_response(sim):
    await sim.post("/his-sim/_faults", json={"kind": "timeout", "count": 1, "delay": 0.3})
    started = time.monotonic()
    resp = await sim.get("/his-sim/SUBEI/fhir/metadata")
    assert resp.status == 200 and time.monotonic() - started >= 0.3


async def test_the_demo_listing_names_mrn_card_code_and_name(sim, state):
    body = await (await sim.get("/his-sim/WENHE/_patients")).json()
    assert body["institution"] == "WENHE" and len(body["items"]) == 9
    assert all(p["card_code"] == f"WENHE-{p['mrn']}" and p["name"] for p in body["items"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
async def test_python_m_his_simulator_serves_standalone():
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "his.simulator", "--port", str(port), cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            deadline = time.monotonic() + 15
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/his-sim/SANWAN/fhir/metadata") as resp:
                        assert resp.status == 200
                        assert (await resp.json())["resourceType"] == "CapabilityStatement"
                        break
                except aiohttp.ClientConnectionError:
                    assert time.monotonic() < deadline, "the simulator did not start"
                    assert process.returncode is None, "the simulator exited"
                    await asyncio.sleep(0.1)
            async with session.get(f"http://127.0.0.1:{port}/his-sim/SANWAN/_patients") as resp:
                items = (await resp.json())["items"]
            assert items == SimulatorState().store("SANWAN").demo_listing()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)


async def test_an_update_keeps_what_the_his_assigned_and_checks_the_version(sim, state):
    id_number = make_id_number("321003", date(1968, 3, 3), 31)
    patient = await (await sim.post("/his-sim/SUBEI/fhir/Patient", json=patient_body(id_number))).json()
    body = patient_body(id_number, name="孙思远") | {"id": patient["id"]}  # no MRN, no card code in the body
    resp = await sim.put(f"/his-sim/SUBEI/fhir/Patient/{patient['id']}", json=body, headers={"If-Match": 'W/"1"'})
    assert resp.status == 200 and resp.headers["ETag"] == 'W/"2"'
    updated = await resp.json()
    assert updated["name"] == [{"text": "孙思远"}] and updated["meta"]["versionId"] == "2"
    assert {i["system"] for i in updated["identifier"]} == \
        {profile.ID_NUMBER_SYSTEM, profile.MRN_SYSTEM, profile.CARD_SYSTEM}
    assert state.store("SUBEI").read("Patient", patient["id"])["name"] == [{"text": "孙思远"}]
    stale = await sim.put(f"/his-sim/SUBEI/fhir/Patient/{patient['id']}", json=body, headers={"If-Match": 'W/"1"'})
    assert stale.status == 412 and (await stale.json())["issue"][0]["code"] == "conflict"
    wrong = await sim.put(f"/his-sim/SUBEI/fhir/Patient/{patient['id']}", json=body | {"birthDate": "1990-13-01"})
    assert wrong.status == 400
    missing = await sim.put("/his-sim/SUBEI/fhir/Patient/424242", json=body | {"id": "424242"})
    assert missing.status == 404
