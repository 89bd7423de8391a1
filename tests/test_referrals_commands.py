"""Referral commands through the real app (issue 4 point 2, duplicates of point 6): create, edit, submit,
reject, redirect, cancel, complete, resubmit; each one transaction with one timeline event."""

from __future__ import annotations

from models import Referral
from referrals import commands
from referrals.state_machine import Status
from tests.referral_support import CLINICAL, RETURN_SUMMARY, Desk, department, institution, make_patient, tomorrow

REFERRER = ("DONGGUAN", "doctor")


async def _patient_id(desk: Desk, name: str = "周明华") -> str:
    return str((await make_patient(desk.cipher, name)).public_id)


async def test_create_a_draft_and_edit_it(client):
    desk = await Desk.open(client)
    created = await desk.ok(await desk.create("DONGGUAN", await _patient_id(desk), "SUBEI", "CARD",
                                              clinical={"chief_complaint": "胸闷"}), 201)
    rid = created["id"]
    assert created["status"] == "draft" and created["version"] == 1 and created["code"].startswith("ZZ")
    assert created["allowed_actions"] == ["edit", "submit", "cancel"]
    assert [e["action"] for e in created["timeline"]] == ["create"]
    assert created["submitted_at"] is None and created["direction"] == "up"

    gaoyou_med = await department("GAOYOU", "MED")
    resp = await client.patch(f"/api/v1/referrals/{rid}", headers=await desk.headers(REFERRER), json={
        "version": 1, "urgency": "urgent", "clinical": CLINICAL, "contact_phone": "13912345678",
        "target_institution_id": str((await institution("GAOYOU")).public_id),
        "target_department_id": str(gaoyou_med.public_id)})
    edited = await desk.ok(resp)
    assert edited["version"] == 2 and edited["status"] == "draft" and edited["urgency"] == "urgent"
    assert edited["target_institution"]["code"] == "GAOYOU" and edited["target_department"]["code"] == "MED"
    assert edited["clinical"]["referral_reason"] == CLINICAL["referral_reason"]
    assert edited["contact_phone"] == "139****5678"
    event = edited["timeline"][-1]
    assert (event["action"], event["from_status"], event["to_status"]) == ("edit", "draft", "draft")
    assert event["data"]["fields"] == sorted(["clinical", "contact_phone_enc", "direction", "needs_source_approval",
                                              "target_department_id", "target_institution_id", "urgency"])

    # A stale version, a colleague, the target's own department or half a target are refused; nothing changes.
    stale = await client.patch(f"/api/v1/referrals/{rid}", headers=await desk.headers(REFERRER),
                               json={"version": 1, "urgency": "routine"})
    assert stale.status == 409 and (await stale.json())["error"]["code"] == "VERSION_CONFLICT"
    colleague = await client.patch(f"/api/v1/referrals/{rid}", headers=await desk.headers(("DONGGUAN", "approver")),
                                   json={"urgency": "routine"})
    assert colleague.status == 403
    same = await client.patch(f"/api/v1/referrals/{rid}", headers=await desk.headers(REFERRER), json={
        "target_institution_id": str((await institution("DONGGUAN")).public_id),
        "target_department_id": str((await department("DONGGUAN", "GP")).public_id)})
    assert same.status == 422 and (await same.json())["error"]["code"] == "SAME_INSTITUTION"
    half = await client.patch(f"/api/v1/referrals/{rid}", headers=await desk.headers(REFERRER),
                              json={"target_department_id": str(gaoyou_med.public_id)})
    assert half.status == 422
    assert (await desk.detail(REFERRER, rid))["version"] == 2

    submitted = await desk.ok(await desk.post(REFERRER, rid, "submit", {"version": 2}))
    assert submitted["status"] == "pending_source" and submitted["submitted_at"]
    late = await client.patch(f"/api/v1/referrals/{rid}", headers=await desk.headers(REFERRER),
                              json={"urgency": "routine"})
    assert late.status == 409 and (await late.json())["error"]["detail"]["status"] == "pending_source"


async def test_submit_refuses_what_the_referral_form_requires(client):
    desk = await Desk.open(client)
    patient_id = await _patient_id(desk)
    resp = await desk.create("DONGGUAN", patient_id, submit=True,
                             clinical={"chief_complaint": "胸闷", "diagnoses": [], "referral_reason": " "})
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "INCOMPLETE_REFERRAL" and "诊断" in error["message"] and "转诊原因" in error["message"]
    assert [f["field"] for f in error["detail"]["fields"]] == ["clinical.diagnoses", "clinical.referral_reason"]
    assert await Referral.all().count() == 0  # nothing half-created

    draft = await desk.ok(await desk.create("DONGGUAN", patient_id, clinical={"referral_reason": "评估"}), 201)
    resp = await desk.post(REFERRER, draft["id"], "submit")
    assert resp.status == 422
    fields = [f["field"] for f in (await resp.json())["error"]["detail"]["fields"]]
    assert fields == ["clinical.diagnoses", "clinical.chief_complaint"]
    assert (await desk.detail(REFERRER, draft["id"]))["status"] == "draft"

    bad_code = await desk.create("DONGGUAN", patient_id, confirm_duplicate=True,
                                 clinical=CLINICAL | {"diagnoses": [{"code": "chest pain", "name": "胸痛"}]})
    assert bad_code.status == 422
    assert "clinical.diagnoses.0.code" in str(await bad_code.json())


async def test_create_refuses_bad_targets_patients_and_non_doctors(client):
    desk = await Desk.open(client)
    patient_id = await _patient_id(desk)
    resp = await desk.create("DONGGUAN", patient_id, "DONGGUAN", "GP")
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "SAME_INSTITUTION"
    resp = await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD",
                             target_department_id=str((await department("GAOYOU", "MED")).public_id))
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "DEPARTMENT_NOT_FOUND"
    resp = await desk.create("DONGGUAN", "00000000-0000-4000-8000-000000000000")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "PATIENT_NOT_FOUND"
    for role in ("approver", "admission_clerk", "admin"):
        assert (await desk.create("DONGGUAN", patient_id, who=("DONGGUAN", role))).status == 403
    assert await Referral.all().count() == 0


async def test_reject_needs_a_coded_reason_and_text_for_other(client):
    desk = await Desk.open(client)
    rid = (await desk.drive(Status.PENDING_TARGET))["id"]
    target = ("SUBEI", "approver")
    resp = await desk.post(target, rid, "reject", {"reason_code": "dislike"})
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "INVALID_REASON"
    assert "no_beds" in (await resp.json())["error"]["detail"]["allowed"]
    resp = await desk.post(target, rid, "reject", {"reason_code": "other", "comment": "  "})
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "REASON_TEXT_REQUIRED"
    assert (await desk.post(target, rid, "reject", {})).status == 422

    rejected = await desk.ok(await desk.post(target, rid, "reject", {"reason_code": "other",
                                                                     "comment": "该患者已在本院随访"}))
    assert rejected["status"] == "rejected" and rejected["fhir_status"] == "rejected"
    assert rejected["rejection"] == {"code": "other", "reason": "其他原因", "text": "该患者已在本院随访"}
    event = rejected["timeline"][-1]
    assert event["data"] == {"reason_code": "other", "reason": "其他原因"} and event["comment"] == "该患者已在本院随访"
    assert event["actor"]["institution"] == "江苏省苏北人民医院"
    referrer_view = await desk.detail(REFERRER, rid)
    assert referrer_view["rejection"]["text"] == "该患者已在本院随访"
    assert referrer_view["allowed_actions"] == ["resubmit"]

    source_step = (await desk.drive(Status.PENDING_SOURCE))["id"]
    rejected = await desk.ok(await desk.post(("DONGGUAN", "approver"), source_step, "reject",
                                             {"reason_code": "incomplete"}))
    assert rejected["rejection"]["reason"] == "病历资料不全"


async def test_redirect_puts_the_refusal_and_the_new_target_on_the_timeline(client):
    desk = await Desk.open(client)
    day = tomorrow()
    await desk.publish_beds("SUBEI", "CARD", day, 2)
    rid = (await desk.drive(Status.PENDING_TARGET))["id"]
    gaoyou, med = await institution("GAOYOU"), await department("GAOYOU", "MED")
    body = {"institution_id": str(gaoyou.public_id), "department_id": str(med.public_id), "comment": "本院心内科满床"}

    for bad in ({"institution_id": str((await institution("DONGGUAN")).public_id),
                 "department_id": str((await department("DONGGUAN", "GP")).public_id)},
                {"institution_id": str((await institution("SUBEI")).public_id),
                 "department_id": str((await department("SUBEI", "NEUR")).public_id)}):
        resp = await desk.post(("SUBEI", "approver"), rid, "redirect", bad)
        assert resp.status == 422 and (await resp.json())["error"]["code"] == "INVALID_REDIRECT"
    assert (await desk.post(("SUBEI", "doctor"), rid, "redirect", body)).status == 403
    assert (await desk.post(("DONGGUAN", "approver"), rid, "redirect", body)).status == 403

    moved = await desk.ok(await desk.post(("SUBEI", "approver"), rid, "redirect", body))
    assert moved["status"] == "pending_target" and moved["target_institution"]["code"] == "GAOYOU"
    assert moved["target_department"]["code"] == "MED" and moved["direction"] == "up"
    event = moved["timeline"][-1]
    assert (event["action"], event["from_status"], event["to_status"]) == ("redirect", "pending_target",
                                                                           "pending_target")
    assert event["actor"]["institution"] == "江苏省苏北人民医院" and event["comment"] == "本院心内科满床"
    assert event["data"] == {"from_institution": "江苏省苏北人民医院", "to_institution": "高邮市人民医院",
                             "to_department": "内科"}
    # The new target decides now; the old one has passed the referral on: it still reads it, but holds it no more.
    box = await desk.ok(await desk.get(("GAOYOU", "approver"), "/api/v1/referrals", box="to_approve"))
    assert [r["id"] for r in box["items"]] == [rid]
    assert (await desk.detail(("SUBEI", "approver"), rid))["allowed_actions"] == []
    referrer_view = await desk.detail(REFERRER, rid)
    assert referrer_view["timeline"] == moved["timeline"]
    # Pending at a target holds no bed: SUBEI's reserved beds are untouched.
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 0
    await desk.publish_beds("GAOYOU", "MED", day, 1)
    booked = await desk.ok(await desk.approve_target("GAOYOU", rid, day=day))
    assert booked["status"] == "scheduled" and booked["admission"]["department"]["code"] == "MED"
    # A scheduled referral is not redirected (the table allows redirect only while pending at the target).
    resp = await desk.post(("GAOYOU", "approver"), rid, "redirect",
                           {"institution_id": str((await institution("BAOYING")).public_id),
                            "department_id": str((await department("BAOYING", "MED")).public_id)})
    assert resp.status == 409


async def test_cancel_before_admission_frees_the_booking(client):
    desk = await Desk.open(client)
    day = tomorrow()
    for status in (Status.DRAFT, Status.PENDING_SOURCE, Status.PENDING_TARGET):
        rid = (await desk.drive(status))["id"]
        assert (await desk.post(("DONGGUAN", "approver"), rid, "cancel")).status == 403
        cancelled = await desk.ok(await desk.post(REFERRER, rid, "cancel", {"comment": "患者要求"}))
        assert cancelled["status"] == "cancelled" and cancelled["timeline"][-1]["comment"] == "患者要求"
        assert cancelled["allowed_actions"] == []

    scheduled = await desk.drive(Status.SCHEDULED, day=day)
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 1
    assert (await desk.post(("SUBEI", "approver"), scheduled["id"], "cancel")).status == 403
    cancelled = await desk.ok(await desk.post(REFERRER, scheduled["id"], "cancel"))
    assert cancelled["status"] == "cancelled"
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 0
    assert (await Referral.get(public_id=scheduled["id"])).booking_id is None
    again = await desk.post(REFERRER, scheduled["id"], "cancel")
    assert again.status == 409 and (await again.json())["error"]["detail"]["status"] == "cancelled"

    admitted = await desk.drive(Status.ADMITTED, day=day)
    resp = await desk.post(REFERRER, admitted["id"], "cancel")
    assert resp.status == 409 and (await resp.json())["error"]["detail"]["status"] == "admitted"
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 1


async def test_a_no_show_expires_and_frees_the_bed(client):
    desk = await Desk.open(client)
    day = tomorrow()
    scheduled = await desk.drive(Status.SCHEDULED, day=day)
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 1
    expired = await commands.expire((await Referral.get(public_id=scheduled["id"])).id)
    assert expired.status == Status.EXPIRED
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 0
    event = (await desk.detail(REFERRER, scheduled["id"]))["timeline"][-1]
    assert (event["action"], event["actor"]["role"], event["actor"]["institution"]) == (
        "expire", "system", "双向转诊云平台")


async def test_complete_sends_the_return_summary_back_to_the_referrer(client):
    desk = await Desk.open(client)
    scheduled = await desk.drive(Status.SCHEDULED)
    resp = await desk.post(("SUBEI", "doctor"), scheduled["id"], "complete", {"summary": RETURN_SUMMARY})
    assert resp.status == 409  # not admitted yet
    admitted = await desk.drive(Status.ADMITTED)
    rid = admitted["id"]
    assert (await desk.post(("SUBEI", "doctor"), rid, "complete", {"summary": {"treatment": "x"}})).status == 422
    assert (await desk.post(REFERRER, rid, "complete", {"summary": RETURN_SUMMARY})).status == 403
    assert (await desk.post(("SUBEI", "approver"), rid, "complete", {"summary": RETURN_SUMMARY})).status == 403

    done = await desk.ok(await desk.post(("SUBEI", "doctor"), rid, "complete",
                                         {"summary": RETURN_SUMMARY | {"discharge_date": "2026-12-01"}}))
    assert done["status"] == "completed"
    back = await desk.detail(REFERRER, rid)
    assert back["return_summary"]["diagnosis"] == RETURN_SUMMARY["diagnosis"]
    assert back["return_summary"]["recommendations"] == RETURN_SUMMARY["recommendations"]
    assert back["return_summary"]["discharge_date"] == "2026-12-01"
    assert back["timeline"][-1]["data"] == {"diagnosis": RETURN_SUMMARY["diagnosis"]}
    outgoing = await desk.ok(await desk.get(REFERRER, "/api/v1/referrals", box="outgoing", status="completed"))
    assert [r["id"] for r in outgoing["items"]] == [rid]


async def test_resubmit_a_rejected_referral_as_a_new_linked_one(client):
    desk = await Desk.open(client)
    rejected = await desk.drive(Status.REJECTED)
    old_id = rejected["id"]
    open_one = await desk.drive(Status.PENDING_SOURCE)
    count = await Referral.all().count()
    # Only the referrer, only a rejected referral.
    assert (await desk.post(("DONGGUAN", "approver"), old_id, "resubmit")).status == 403
    assert (await desk.post(("SUBEI", "doctor"), old_id, "resubmit")).status == 403
    assert (await desk.post(REFERRER, open_one["id"], "resubmit")).status == 409
    assert await Referral.all().count() == count

    new = await desk.ok(await desk.post(REFERRER, old_id, "resubmit", {
        "submit": True, "clinical": CLINICAL | {"referral_reason": "补充冠脉CTA后再次申请"}}), 201)
    assert new["id"] != old_id and new["code"] != rejected["code"]
    assert new["status"] == "pending_source" and new["previous_id"] == old_id
    assert new["clinical"]["referral_reason"] == "补充冠脉CTA后再次申请"
    assert new["timeline"][0]["data"]["previous"] == rejected["code"]
    old = await desk.detail(REFERRER, old_id)
    assert old["status"] == "rejected"
    event = old["timeline"][-1]
    assert (event["action"], event["from_status"], event["to_status"]) == ("resubmit", "rejected", "rejected")
    assert event["data"] == {"new_referral": new["code"], "new_referral_id": new["id"]}
    for rid in (old_id, new["id"]):
        assert (await desk.ok(await desk.get(REFERRER, f"/api/v1/referrals/{rid}/timeline/verify")))["valid"]

    draft = await desk.ok(await desk.post(REFERRER, old_id, "resubmit"), 201)
    assert draft["status"] == "draft" and draft["clinical"] == rejected["clinical"]


async def test_a_second_open_referral_to_the_same_target_needs_confirmation(client):
    desk = await Desk.open(client)
    patient_id = await _patient_id(desk)
    first = await desk.ok(await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD", submit=True), 201)
    resp = await desk.create("WENHE", patient_id, "SUBEI", "NEUR")
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "DUPLICATE_REFERRAL"
    assert error["detail"]["referral_id"] == first["id"] and error["detail"]["code"] == first["code"]
    assert error["detail"]["link"] == f"/api/v1/referrals/{first['id']}"
    assert error["detail"]["status"] == "pending_source"
    assert await Referral.all().count() == 1

    # Another target is no duplicate; a confirmed duplicate is created.
    assert (await desk.create("DONGGUAN", patient_id, "GAOYOU", "MED")).status == 201
    second = await desk.ok(await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD", confirm_duplicate=True), 201)
    assert second["id"] != first["id"]
    # Once the open ones are closed, no confirmation is needed.
    await desk.ok(await desk.post(REFERRER, first["id"], "cancel"))
    await desk.ok(await desk.post(REFERRER, second["id"], "cancel"))
    assert (await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD")).status == 201
