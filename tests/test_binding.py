"""Binding a patient needs proof (accounts.binding): the WeChat-verified phone matching the phone on file, a
treating institution's staff member confirming in person, or, for a family member, the patient's approval.
Through the real app, the WeChat sandbox (phone codes) and the HIS simulator."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt

from appkeys import CIPHER, SETTINGS
from models import AuditEvent, BindingRequest, Patient, PatientBinding, WeChatAccount
from qr.binding_token import issue_binding_token
from qr.patient_card import issue_card
from tests.referral_support import put_on_file, scan_in
from tests.support import bearer, login, login_code, login_demo, phone_code, read_qr, seeded, valid_id

ON_FILE = "13812345678"


async def bind(client, openid: str, name: str, id_number: str, relation: str = "self", phone: str | None = None):
    body = {"code": await login_code(client, openid), "name": name, "id_number": id_number, "relation": relation}
    if phone is not None:
        body["phone_code"] = await phone_code(client, phone)
    return await client.post("/api/v1/auth/bind-patient", json=body)


async def refused(resp, missing: str) -> dict:
    """The 403 naming the missing proof; returns its detail."""
    body = await resp.json()
    assert resp.status == 403, body
    assert body["error"]["code"] == "BINDING_PROOF_REQUIRED" and body["error"]["detail"]["missing"] == missing, body
    assert not body["error"]["message"].isascii()
    return body["error"]["detail"]


async def bound_patients(openid: str) -> list[int]:
    return await PatientBinding.filter(account__openid=openid).values_list("patient_id", flat=True)


async def confirm(client, session: dict, token: str):
    return await client.post("/api/v1/binding-requests/confirm", json={"token": token}, headers=bearer(session))


async def patient_on_file(client, name: str = "林晓燕", seq: int = 5) -> tuple[Patient, str]:
    patient = await put_on_file(client.server.app[CIPHER], name, valid_id(seq))
    return patient, valid_id(seq)


# ------------------------------------------------------------------------------------- the verified phone

async def test_the_patients_verified_phone_matching_the_one_on_file_binds_at_once(client):
    patient, id_number = await patient_on_file(client)
    resp = await bind(client, "o_self_phone", "林晓燕", id_number, phone=ON_FILE)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["account"]["patients"][0]["relation"] == "self"
    assert await bound_patients("o_self_phone") == [patient.id]
    [event] = await AuditEvent.filter(action="patient.bound")
    assert event.target_id == str(patient.public_id)
    assert event.detail == {"proof": "wechat_phone", "relation": "self", "request": None}


async def test_without_a_matching_verified_phone_the_binding_waits_for_proof(client):
    patient, id_number = await patient_on_file(client)
    detail = await refused(await bind(client, "o_no_proof", "林晓燕", id_number), "wechat_phone")
    assert detail["accepted"] == ["wechat_phone", "staff_in_person"]
    pending = detail["binding_request"]
    # The QR is the signed token and nothing else: no name, no ID number.
    assert read_qr(pending["qr_png"]).text == pending["token"]
    claims = jwt.decode(pending["token"], options={"verify_signature": False})
    assert set(claims) == {"sub", "iat", "exp"} and claims["sub"] == pending["id"]
    assert "林晓燕" not in pending["token"] and id_number not in pending["token"]

    other = await refused(await bind(client, "o_no_proof", "林晓燕", id_number, phone="13900001111"), "matching_phone")
    assert other["binding_request"]["id"] == pending["id"]  # the same pending request, renewed
    assert await bound_patients("o_no_proof") == []
    assert await BindingRequest.filter(patient_id=patient.id).count() == 1


async def test_the_phone_on_file_in_a_treating_institutions_his_counts_and_that_read_is_audited(client):
    await seeded(client)
    doctor = await login_demo(client, "SUBEI", "doctor")
    scanned = await scan_in(client, doctor, "SUBEI")
    person = scanned["person"]
    patient = await Patient.get(public_id=scanned["patient"]["id"])
    # The platform's copy of the phone is another number (the patient changed it at the HIS desk since).
    cipher = client.server.app[CIPHER]
    his_phone = cipher.decrypt(patient.phone_enc, "phone")
    await Patient.filter(id=patient.id).update(phone_enc=cipher.encrypt("13700000000", "phone"))
    resp = await bind(client, "o_his_phone", person["name"], person["id_number"], phone=his_phone)
    assert resp.status == 201, await resp.text()
    [read] = await AuditEvent.filter(action="his.cross_institution_read")
    assert read.detail == {"his": "SUBEI", "purpose": "binding_phone", "referral": None}
    assert read.target_id == str(patient.public_id) and read.institution_id is None


async def test_phone_codes_that_are_invalid_or_replayed_are_refused(client):
    _, id_number = await patient_on_file(client)
    code = await phone_code(client, "13900001111")
    body = {"code": await login_code(client, "o_code_a"), "name": "林晓燕", "id_number": id_number,
            "relation": "self", "phone_code": code}
    await refused(await client.post("/api/v1/auth/bind-patient", json=body), "matching_phone")
    body["code"] = await login_code(client, "o_code_a")
    replayed = await client.post("/api/v1/auth/bind-patient", json=body)
    assert replayed.status == 422 and (await replayed.json())["error"]["code"] == "INVALID_PHONE_CODE"
    body |= {"code": await login_code(client, "o_code_a"), "phone_code": "never-issued"}
    resp = await client.post("/api/v1/auth/bind-patient", json=body)
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "INVALID_PHONE_CODE"


async def test_a_patient_the_platform_has_no_record_of_cannot_be_bound_yet(client):
    detail = await refused(await bind(client, "o_unknown", "马无档", valid_id(99), phone=ON_FILE), "patient_record")
    assert detail["binding_request"] is None
    assert not await Patient.filter(name="马无档").exists()


# ------------------------------------------------------------------------------------------ in person

async def test_a_treating_institutions_staff_member_confirms_in_person_once(client):
    await seeded(client)
    scanned = await scan_in(client, await login_demo(client, "SUBEI", "doctor"), "SUBEI")
    person = scanned["person"]
    detail = await refused(await bind(client, "o_at_desk", person["name"], person["id_number"]), "wechat_phone")
    token = detail["binding_request"]["token"]
    requester = await login(client, "o_at_desk")

    # The requester sees their own request but cannot confirm it; staff elsewhere or without the role cannot.
    own = await client.post("/api/v1/binding-requests/lookup", json={"token": token}, headers=bearer(requester))
    assert own.status == 200 and (await own.json())["proof"] is None
    resp = await confirm(client, requester, token)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "OWN_BINDING_REQUEST"
    for who, code in ((("GAOYOU", "doctor"), "NOT_TREATING_INSTITUTION"),
                      (("SUBEI", "approver"), "CANNOT_CONFIRM_BINDING")):
        session = await login_demo(client, *who)
        for path in ("lookup", "confirm"):
            resp = await client.post(f"/api/v1/binding-requests/{path}", json={"token": token}, headers=bearer(session))
            assert resp.status == 403 and (await resp.json())["error"]["code"] == code, (who, path)
    stranger = await login(client, "o_stranger")
    assert (await confirm(client, stranger, token)).status == 403
    assert (await client.post("/api/v1/binding-requests/confirm", json={"token": token})).status == 401

    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    looked = await (await client.post("/api/v1/binding-requests/lookup", json={"token": token},
                                      headers=bearer(clerk))).json()
    assert looked["state"] == "pending" and looked["proof"] == "staff_in_person"
    assert looked["patient"]["name"] != person["name"] and "*" in looked["patient"]["id_number"]
    resp = await confirm(client, clerk, token)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["state"] == "confirmed"
    me = await (await client.get("/api/v1/me", headers=bearer(requester))).json()
    assert [p["id"] for p in me["patients"]] == [scanned["patient"]["id"]]
    [event] = await AuditEvent.filter(action="patient.bound")
    assert event.detail["proof"] == "staff_in_person" and event.detail["request"] == detail["binding_request"]["id"]
    assert event.actor_staff_id is not None

    # Replayed: the QR is spent.
    again = await confirm(client, clerk, token)
    assert again.status == 410 and (await again.json())["error"]["code"] == "BINDING_REQUEST_USED"
    assert await PatientBinding.filter(patient__public_id=scanned["patient"]["id"]).count() == 1


async def test_bad_and_stale_binding_tokens_are_refused(client, app):
    await seeded(client)
    scanned = await scan_in(client, await login_demo(client, "SUBEI", "doctor"), "SUBEI")
    person = scanned["person"]
    detail = await refused(await bind(client, "o_stale", person["name"], person["id_number"]), "wechat_phone")
    pending = detail["binding_request"]
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    secret = app[SETTINGS].jwt_secret
    request_id = uuid.UUID(pending["id"])

    header, payload, signature = pending["token"].split(".")
    bad = ["not-a-token", f"{header}.{payload}.{signature[:-4]}AAAA",
           issue_binding_token("another-installation-secret", request_id, time.time() + 600),
           issue_card(secret, request_id).token,  # a patient card is not a binding QR
           jwt.encode({"sub": pending["id"], "iat": 1, "exp": int(time.time()) + 600}, secret, algorithm="HS256")]
    for token in bad:
        resp = await confirm(client, clerk, token)
        assert resp.status == 422 and (await resp.json())["error"]["code"] == "BINDING_TOKEN_INVALID", token
    resp = await confirm(client, clerk, issue_binding_token(secret, uuid.uuid4(), time.time() + 600))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "BINDING_REQUEST_NOT_FOUND"

    # Stale: a token past its exp, and a request past its expiry whatever the token says.
    expired = issue_binding_token(secret, request_id, time.time() - 3600, now=time.time() - 7200)
    resp = await confirm(client, clerk, expired)
    assert resp.status == 410 and (await resp.json())["error"]["code"] == "BINDING_REQUEST_EXPIRED"
    await BindingRequest.filter(public_id=request_id).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    resp = await confirm(client, clerk, pending["token"])
    assert resp.status == 410 and (await resp.json())["error"]["code"] == "BINDING_REQUEST_EXPIRED"
    assert await bound_patients("o_stale") == []


# ------------------------------------------------------------------------------------------- family

async def test_a_family_member_binds_with_the_patients_own_approval_never_by_phone(client):
    patient, id_number = await patient_on_file(client, "郑老伯", 12)
    owner = await (await bind(client, "o_elder", "郑老伯", id_number, phone=ON_FILE)).json()
    phone_reads = (await (await client.get("/wechat-sandbox/sandbox/stats")).json())["phone_numbers_read"]

    # Even the right phone does not prove a family relation.
    detail = await refused(await bind(client, "o_son", "郑老伯", id_number, "child", phone=ON_FILE),
                           "patient_approval")
    assert detail["accepted"] == ["patient_approval", "staff_in_person"]
    stats = await (await client.get("/wechat-sandbox/sandbox/stats")).json()
    assert stats["phone_numbers_read"] == phone_reads
    token = detail["binding_request"]["token"]

    # Another family member is not the patient: only the patient's own (self) binding approves.
    daughter_detail = await refused(await bind(client, "o_daughter", "郑老伯", id_number, "child"), "patient_approval")
    assert (await confirm(client, await login(client, "o_daughter"), token)).status == 403
    looked = await client.post("/api/v1/binding-requests/lookup", json={"token": token}, headers=bearer(owner))
    assert (await looked.json())["proof"] == "patient_approval" and (await looked.json())["relation_name"] == "子女"
    resp = await confirm(client, owner, token)
    assert resp.status == 200, await resp.text()
    assert await bound_patients("o_son") == [patient.id]
    son = await login(client, "o_son")
    assert son["account"]["patients"][0]["relation"] == "child"
    # A bound family member cannot approve others in turn.
    resp = await confirm(client, son, daughter_detail["binding_request"]["token"])
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "CANNOT_CONFIRM_BINDING"
    assert (await AuditEvent.filter(action="patient.bound").order_by("-id").first()).detail["proof"] == \
        "patient_approval"
    assert await WeChatAccount.filter(openid="o_daughter").exists() and await bound_patients("o_daughter") == []


async def test_a_second_self_binding_is_refused_at_confirmation_too(client):
    await seeded(client)
    doctor = await login_demo(client, "SUBEI", "doctor")
    first, second = await scan_in(client, doctor, "SUBEI", 0), await scan_in(client, doctor, "SUBEI", 1)
    pending = [(await refused(await bind(client, "o_two_selves", p["person"]["name"], p["person"]["id_number"]),
                              "wechat_phone"))["binding_request"]["token"] for p in (first, second)]
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    assert (await confirm(client, clerk, pending[0])).status == 200
    resp = await confirm(client, clerk, pending[1])
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "SELF_ALREADY_BOUND"
    assert len(await bound_patients("o_two_selves")) == 1
    # The refused confirmation did not spend the request.
    assert await BindingRequest.filter(state="pending").count() == 1
