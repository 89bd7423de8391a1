"""Standing check: schema-driven fuzzing of the whole API (schemathesis against /api/v1/openapi.json).

Every documented operation gets generated requests, valid ones against real records and invalid ones, each
sent as a staff member (holding every role) and as a patient, from a fixed seed and a bounded number of
examples. No answer may be a 5xx, and every answer must have a documented status, content type and schema
(the JSON error shape included), with every time in the one API format."""

from __future__ import annotations

import asyncio
import os
import re

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup

from tests.notify_support import run_jobs
from tests.support import login
from tests.test_auth import _bind

# Per operation and generation mode, each sent twice: about a minute per backend on two cores. FUZZ_EXAMPLES
# raises it for a deeper search by hand.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
SKIP = {("POST", "/api/v1/auth/logout")}  # would revoke the callers' tokens halfway through
TIME_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}")
API_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _odd_times(value) -> list[str]:
    if isinstance(value, dict):
        return [t for item in value.values() for t in _odd_times(item)]
    if isinstance(value, list):
        return [t for item in value for t in _odd_times(item)]
    if isinstance(value, str) and TIME_LIKE.match(value) and not API_TIME.fullmatch(value):
        return [value]
    return []


# Which record each path's `{id}` names, by path prefix; other parameters are named after what they hold.
ID_KINDS = (("/api/v1/referrals/", "referral"), ("/api/v1/institutions/", "institution"),
            ("/api/v1/admin/institutions/", "institution"), ("/api/v1/admin/staff/", "staff"),
            ("/api/v1/admin/departments/", "department"), ("/api/v1/departments/", "department"),
            ("/api/v1/inbox/", "message"), ("/api/v1/admin/jobs/", "job"),
            ("/api/v1/consultations/", "consultation"), ("/api/v1/conversations/", "conversation"),
            ("/api/v1/ward-rounds/", "round"), ("/api/v1/surveys/", "survey"))


def _id_kind(path: str, name: str) -> str:
    """The key in the records of `path`'s parameter `name`; an attachment is the one of the path's record."""
    kind = next((kind for prefix, kind in ID_KINDS if path.startswith(prefix)), None)
    if name == "id":
        assert kind, f"no record known for {path}'s {{id}}: add its prefix to ID_KINDS"
        return kind
    if name == "attachment_id":
        return f"{kind}_attachment"
    return name


def _fuzz(document: dict, base_url: str, tokens: dict[str, str], ids: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    findings: list[str] = []

    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIP:
            continue
        real = {name: ids[_id_kind(operation.path, name)] for name in re.findall(r"{(\w+)}", operation.path)}
        # Valid requests against real records reach deep into the handlers; invalid ones (unknown ids
        # included) test the refusals.
        for mode, path_parameters in ((GenerationMode.POSITIVE, real or None), (GenerationMode.NEGATIVE, None)):
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

            @seed(20261130)
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def run(case) -> None:
                for who, token in tokens.items():
                    headers = {"Authorization": f"Bearer {token}"}
                    response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
                    label = f"{who} {operation.method.upper()} {operation.path} -> {response.status_code}"
                    try:
                        case.validate_response(response, checks=CHECKS, headers=headers)
                    except (Failure, FailureGroup) as exc:
                        findings.append(f"{label}: {str(exc)[:600]}\n  {case.as_curl_command()[:400]}")
                    if response.headers.get("Content-Type", "").startswith("application/json"):
                        odd = _odd_times(response.json())
                        if odd:
                            findings.append(f"{label}: times not in the API format: {odd[:3]}")

            try:
                run()
            except Unsatisfiable:  # nothing to negate: the operation has no parameters and no body
                assert mode is GenerationMode.NEGATIVE, operation.label
    return findings


async def _attach(client, headers: dict, path: str) -> str:
    """Upload a small PNG to `path`; the attachment's id."""
    from aiohttp import FormData

    from tests.test_referral_records import PNG

    form = FormData()
    form.add_field("file", PNG, filename="检查单.png", content_type="image/png")
    resp = await client.post(path, data=form, headers=headers)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    return body.get("id") or body["attachment_id"]  # a chat upload answers as the message will carry it


async def _records(client, desk, patient_id: str, staff: dict) -> dict[str, str]:
    """Real ids for the path parameters: a scheduled referral of the fuzzing patient with a slip and an
    attachment, and another one completed (so the patient has a survey invitation); a department, another staff
    member, an inbox message and a job; a consultation the fuzzing staff member accepted from their pool, with
    an attachment, and its conversation with one; a started ward round of the scheduled referral with the member
    taking part and an advice item to acknowledge; a console login ticket (its first confirmation succeeds, the
    rest are answered as used)."""
    from appkeys import KV_STORE
    from console.sessions import issue_ticket
    from models import Department, InboxMessage, Institution, OutboxJob, Patient, Slip, Staff, SurveyInvitation
    from referrals.state_machine import Status
    from tests.consult_support import request_consultation, schedule_round
    from tests.support import bearer

    await desk.drive(Status.COMPLETED, patient_id=patient_id)
    referral = await desk.drive(Status.SCHEDULED, patient_id=patient_id)
    doctor = await desk.session("DONGGUAN", "doctor")
    referral_attachment = await _attach(client, bearer(doctor), f"/api/v1/referrals/{referral['id']}/attachments")
    await run_jobs(client.server.app)  # notifications land in the inbox; the jobs stay listed as done
    subei = await Institution.get(code="SUBEI")
    expert = next(s for s in await Staff.filter(institution_id=subei.id) if "expert" in s.roles)

    consultation = await desk.ok(await request_consultation(desk), 201)
    cid = consultation["id"]
    consultation = await desk.ok(await client.post(f"/api/v1/consultations/{cid}/accept", json={},
                                                   headers=bearer(staff)))
    conversation = consultation["conversation_id"]
    consultation_attachment = await _attach(client, bearer(staff), f"/api/v1/consultations/{cid}/attachments")
    conversation_attachment = await _attach(client, bearer(staff), f"/api/v1/conversations/{conversation}/attachments")

    member = await Staff.get(account__openid="o_fuzz_staff")
    local = await Staff.get(account__openid="demo_dongguan_doctor")
    ward_round = await desk.ok(await schedule_round(desk, referral["id"], participants=[
        str(local.public_id), str(member.public_id)]), 201)
    rid = ward_round["id"]
    await desk.ok(await client.post(f"/api/v1/ward-rounds/{rid}/start", json={}, headers=bearer(staff)))
    await desk.ok(await client.post(f"/api/v1/ward-rounds/{rid}/record", json={
        "findings": "胸闷较前缓解", "advice": ["阿司匹林改为100 mg 每日一次"]}, headers=bearer(staff)))
    return {
        "referral": referral["id"], "referral_attachment": referral_attachment, "institution": str(subei.public_id),
        "department": str((await Department.filter(institution_id=subei.id).first()).public_id),
        "staff": str(expert.public_id), "message": str((await InboxMessage.all().first()).public_id),
        "job": str((await OutboxJob.all().first()).id),
        "code": (await Slip.get(referral__public_id=referral["id"])).code,
        "consultation": cid, "consultation_attachment": consultation_attachment,
        "conversation": conversation, "conversation_attachment": conversation_attachment,
        "round": rid, "n": "1", "respondent": "patient",
        "ticket": (await issue_ticket(client.server.app[KV_STORE])).ticket,
        "survey": str((await SurveyInvitation.get(
            patient_id=(await Patient.get(public_id=patient_id)).id, occasion="completed")).public_id),
    }


async def test_schema_fuzzing_finds_no_server_error_and_nothing_off_schema(client):
    from models import Role, Staff, WeChatAccount
    from tests.referral_support import Desk, department, institution

    desk = await Desk.open(client)
    # One staff member with every role, so that every staff route is reached past its role check; in SUBEI's
    # cardiology expert pool, so that they accept the consultation and join its conversation.
    member = await Staff.create(institution=await institution("SUBEI"), department=await department("SUBEI", "CARD"),
                                name="全能测试", title="", roles=[str(role) for role in Role])
    await WeChatAccount.create(openid="o_fuzz_staff", staff=member)
    staff = await login(client, "o_fuzz_staff")
    resp = await _bind(client, "o_fuzz_patient")
    assert resp.status == 201, await resp.text()
    patient = await resp.json()
    ids = await _records(client, desk, patient["account"]["patients"][0]["id"], staff)
    document = await (await client.get("/api/v1/openapi.json")).json()
    base_url = str(client.make_url("")).rstrip("/")
    findings = await asyncio.to_thread(_fuzz, document, base_url,
                                       {"staff": staff["access_token"], "patient": patient["access_token"]}, ids)
    assert findings == [], f"{len(findings)} findings:\n" + "\n".join(findings[:400])
