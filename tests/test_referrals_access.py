"""Access through the real app: staff see only referrals involving their institution, approvers act only for
their own institution's step, patients see only their own, and anything else is a 404 as if it did not exist."""

from __future__ import annotations

import uuid

from models import AuditEvent, Referral
from referrals.state_machine import Status
from security import audit
from tests.referral_support import Desk, bind_patient, make_patient, patient_account, scan_in

ACTION_BODIES = {
    "submit": {}, "approve": {"admission": {"date": "2099-01-01"}}, "reject": {"reason_code": "no_beds"},
    "redirect": {"institution_id": str(uuid.uuid4()), "department_id": str(uuid.uuid4())}, "cancel": {},
    "complete": {"summary": {"diagnosis": "稳定"}}, "resubmit": {},
}


async def test_a_third_institution_sees_nothing_of_a_referral_between_two_others(client):
    desk = await Desk.open(client)
    referral = await desk.drive(Status.PENDING_SOURCE)  # DONGGUAN → SUBEI
    rid = referral["id"]
    for role in ("doctor", "approver", "admission_clerk", "expert", "admin"):
        outsider = ("GAOYOU", role)
        paths = [f"/api/v1/referrals/{rid}", f"/api/v1/referrals/{rid}/timeline/verify"]
        if role in ("doctor", "admission_clerk"):  # the others are refused by role before any lookup
            paths.append(f"/api/v1/referrals/{rid}/patient-identity")
        for path in paths:
            resp = await desk.get(outsider, path)
            assert resp.status == 404, (role, path, await resp.text())
            assert (await resp.json())["error"]["code"] == "REFERRAL_NOT_FOUND"
        for action, body in ACTION_BODIES.items():
            resp = await desk.post(outsider, rid, action, body)
            assert resp.status == 404, (role, action, await resp.text())
        for box in ("outgoing", "incoming"):
            page = await desk.ok(await desk.get(outsider, "/api/v1/referrals", box=box))
            assert page["items"] == []
    page = await desk.ok(await desk.get(("GAOYOU", "approver"), "/api/v1/referrals", box="to_approve"))
    assert page["items"] == [] and page["counts"] == {"outgoing": 0, "incoming": 0, "to_approve": 0}
    assert (await Referral.get(public_id=rid)).status == Status.PENDING_SOURCE


async def test_approvers_act_only_for_their_own_institutions_step(client):
    desk = await Desk.open(client)
    rid = (await desk.drive(Status.PENDING_SOURCE))["id"]

    # The target's approver cannot approve the source's step, nor can another institution's approver.
    resp = await desk.approve_target("SUBEI", rid)
    assert resp.status == 409 and (await resp.json())["error"]["detail"]["status"] == "pending_source"
    assert (await desk.post(("GAOYOU", "approver"), rid, "approve")).status == 404
    # Staff of the source without the approver role cannot either.
    for role in ("doctor", "admission_clerk", "expert", "admin"):
        resp = await desk.post(("DONGGUAN", role), rid, "approve")
        assert resp.status == 403, role
        assert (await resp.json())["error"]["code"] == "NOT_YOUR_STEP"
    assert (await desk.detail(("DONGGUAN", "doctor"), rid))["status"] == "pending_source"

    await desk.ok(await desk.post(("DONGGUAN", "approver"), rid, "approve"))
    # Now the source's approver cannot take the target's decision.
    for action, body in (("approve", {}), ("reject", {"reason_code": "no_beds"})):
        resp = await desk.post(("DONGGUAN", "approver"), rid, action, body)
        assert resp.status == 409, action
        assert (await resp.json())["error"]["detail"]["status"] == "pending_target"
    resp = await desk.post(("SUBEI", "doctor"), rid, "approve", {"admission": {"date": "2099-01-01"}})
    assert resp.status == 403
    detail = await desk.detail(("SUBEI", "approver"), rid)
    assert detail["status"] == "pending_target" and len(detail["timeline"]) == 3


async def test_an_institution_policy_decides_who_approves(client):
    desk = await Desk.open(client)
    rid = (await desk.drive(Status.PENDING_SOURCE))["id"]
    assert (await desk.post(("DONGGUAN", "expert"), rid, "approve")).status == 403
    resp = await desk.client.put("/api/v1/admin/policy", json={"approver_roles": ["approver", "expert"]},
                                 headers=await desk.headers(("DONGGUAN", "admin")))
    assert resp.status == 200
    assert (await desk.detail(("DONGGUAN", "expert"), rid))["allowed_actions"] == ["approve", "reject"]
    approved = await desk.ok(await desk.post(("DONGGUAN", "expert"), rid, "approve"))
    assert approved["timeline"][-1]["actor"]["role"] == "approver"
    # DONGGUAN's policy gives SUBEI's experts nothing.
    assert (await desk.detail(("SUBEI", "expert"), rid))["allowed_actions"] == []


async def test_a_patient_sees_only_their_own_referrals(client):
    desk = await Desk.open(client)
    doctor = await desk.session("DONGGUAN", "doctor")
    # The patient the doctor scanned binds their own WeChat account by real name.
    scanned = await scan_in(client, doctor, "DONGGUAN")
    person = scanned["person"]
    me = await bind_patient(client, "o_patient_self", person["name"], person["id_number"])
    assert me["account"]["patients"][0]["id"] == scanned["patient"]["id"]
    mine = await desk.drive(Status.SCHEDULED, patient_id=scanned["patient"]["id"])
    draft = await desk.drive(Status.DRAFT, patient_id=scanned["patient"]["id"], target="GAOYOU", dept="MED")
    other_patient = await make_patient(desk.cipher, "吴其他")
    await patient_account(other_patient, "o_patient_other")
    theirs = await desk.drive(Status.PENDING_TARGET, patient_id=str(other_patient.public_id))

    page = await desk.ok(await desk.get("o_patient_self", "/api/v1/referrals", box="mine"))
    assert [r["id"] for r in page["items"]] == [mine["id"]]  # drafts are the doctor's business
    assert page["counts"] == {"mine": 1}
    own = await desk.detail("o_patient_self", mine["id"])
    assert own["status"] == "scheduled" and own["allowed_actions"] == []
    assert own["timeline"] == mine["timeline"]
    assert (await desk.get("o_patient_self", f"/api/v1/referrals/{theirs['id']}")).status == 404
    other_page = await desk.ok(await desk.get("o_patient_other", "/api/v1/referrals", box="mine"))
    assert [r["id"] for r in other_page["items"]] == [theirs["id"]]
    assert (await desk.get("o_patient_other", f"/api/v1/referrals/{mine['id']}")).status == 404
    assert (await desk.get("o_patient_other", f"/api/v1/referrals/{draft['id']}")).status == 404

    # A patient acts on nothing and reads neither staff boxes, the hash check nor the unmasked identity.
    resp = await desk.post("o_patient_self", mine["id"], "cancel")
    assert resp.status == 403
    assert (await Referral.get(public_id=mine["id"])).status == Status.SCHEDULED
    for box in ("outgoing", "incoming", "to_approve"):
        assert (await desk.get("o_patient_self", "/api/v1/referrals", box=box)).status == 403
    assert (await desk.get("o_patient_self", f"/api/v1/referrals/{mine['id']}/timeline/verify")).status == 403
    assert (await desk.get("o_patient_self", f"/api/v1/referrals/{mine['id']}/patient-identity")).status == 403
    # Staff have no "mine" box; an account bound to nobody sees nothing.
    assert (await desk.get(("DONGGUAN", "doctor"), "/api/v1/referrals", box="mine")).status == 403
    assert (await desk.get("o_nobody", "/api/v1/referrals", box="mine")).status == 403
    assert (await desk.get("o_nobody", f"/api/v1/referrals/{mine['id']}")).status == 404


async def test_guessed_and_malformed_ids_are_404_and_anonymous_callers_401(client):
    desk = await Desk.open(client)
    referral = await desk.drive(Status.DRAFT)
    for rid in (str(uuid.uuid4()), "1", "not-a-uuid", referral["code"]):
        resp = await desk.get(("DONGGUAN", "doctor"), f"/api/v1/referrals/{rid}")
        assert resp.status == 404, rid
        assert (await resp.json())["error"]["code"] == "REFERRAL_NOT_FOUND"
        assert (await desk.post(("DONGGUAN", "doctor"), rid, "submit")).status == 404
    assert (await client.get(f"/api/v1/referrals/{referral['id']}")).status == 401
    assert (await client.get("/api/v1/referrals")).status == 401
    assert (await client.post(f"/api/v1/referrals/{referral['id']}/submit", json={})).status == 401


async def test_unmasked_identity_is_for_the_two_sides_doctors_and_clerks_and_is_audited(client):
    desk = await Desk.open(client)
    patient = await make_patient(desk.cipher, "郑完整")
    rid = (await desk.drive(Status.SCHEDULED, patient_id=str(patient.public_id)))["id"]
    detail = await desk.detail(("SUBEI", "admission_clerk"), rid)
    assert detail["patient"]["name"] == "郑*整"

    before = await AuditEvent.filter(action="patient.identity_read").count()
    identity = await desk.ok(await desk.get(("SUBEI", "admission_clerk"), f"/api/v1/referrals/{rid}/patient-identity"))
    assert identity["name"] == "郑完整" and len(identity["id_number"]) == 18 and identity["phone"] == "13812345678"
    await desk.ok(await desk.get(("DONGGUAN", "doctor"), f"/api/v1/referrals/{rid}/patient-identity"))
    events = await AuditEvent.filter(action="patient.identity_read").order_by("id")
    assert len(events) == before + 2
    assert events[-1].target_id == str(patient.public_id) and events[-1].detail == {"referral": detail["code"]}
    assert identity["id_number"] not in str([e.detail for e in events])
    assert (await audit.verify()).valid

    for who, status in ((("SUBEI", "approver"), 403), (("DONGGUAN", "admin"), 403), (("GAOYOU", "doctor"), 404)):
        assert (await desk.get(who, f"/api/v1/referrals/{rid}/patient-identity")).status == status, who
    assert await AuditEvent.filter(action="patient.identity_read").count() == before + 2


async def test_a_draft_is_private_to_its_source_until_it_is_submitted(client):
    desk = await Desk.open(client)
    patient = await make_patient(desk.cipher, "冯草稿")
    draft = await desk.drive(Status.DRAFT, patient_id=str(patient.public_id))  # DONGGUAN → SUBEI
    cancelled = await desk.drive(Status.CANCELLED, patient_id=str(patient.public_id), target="GAOYOU", dept="MED")
    assert cancelled["submitted_at"] is None
    paths = ["", "/patient-identity", "/attachments", "/orders", "/timeline/verify", "/slip"]
    for rid, target in ((draft["id"], "SUBEI"), (cancelled["id"], "GAOYOU")):
        for role in ("doctor", "admission_clerk", "approver", "admin"):
            for path in paths:
                resp = await desk.get((target, role), f"/api/v1/referrals/{rid}{path}")
                assert resp.status in (403, 404), (role, path, resp.status)
                if resp.status == 403:  # refused by role before the lookup, as for an unrelated referral
                    assert (await resp.json())["error"]["code"] == "ROLE_REQUIRED", (role, path)
            assert (await desk.get((target, role), f"/api/v1/referrals/{rid}")).status == 404
            for action, body in ACTION_BODIES.items():
                assert (await desk.post((target, role), rid, action, body)).status == 404, (role, action)
        page = await desk.ok(await desk.get((target, "doctor"), "/api/v1/referrals", box="incoming"))
        assert rid not in [r["id"] for r in page["items"]]
    identity = await desk.get(("SUBEI", "doctor"), f"/api/v1/referrals/{draft['id']}/patient-identity")
    assert identity.status == 404 and "冯草稿" not in await identity.text()
    # The source's own staff keep their working copy.
    assert (await desk.detail(("DONGGUAN", "doctor"), draft["id"]))["status"] == "draft"

    # From submission on, the target sees it.
    await desk.ok(await desk.post(("DONGGUAN", "doctor"), draft["id"], "submit"))
    assert (await desk.detail(("SUBEI", "doctor"), draft["id"]))["status"] == "pending_source"
    page = await desk.ok(await desk.get(("SUBEI", "doctor"), "/api/v1/referrals", box="incoming"))
    assert draft["id"] in [r["id"] for r in page["items"]]
    await desk.ok(await desk.get(("SUBEI", "doctor"), f"/api/v1/referrals/{draft['id']}/patient-identity"))
async def test_an_institution_that_redirected_a_referral_still_reads_it_but_cannot_act(client):
    from tests.referral_support import institution

    desk = await Desk.open(client)
    body = await desk.drive(Status.PENDING_TARGET)  # DONGGUAN → SUBEI
    baoying = await institution("BAOYING")
    department = (await baoying.departments.all())[0]
    await desk.ok(await desk.post(("SUBEI", "approver"), body["id"], "redirect",
                                  {"institution_id": str(baoying.public_id),
                                   "department_id": str(department.public_id), "comment": "本院床位已满"}))
    for role in ("approver", "doctor"):
        seen = await desk.detail(("SUBEI", role), body["id"])
        assert seen["target_institution"]["code"] == "BAOYING" and seen["allowed_actions"] == []
        assert [e["action"] for e in seen["timeline"]][-1] == "redirect"
    refused = await desk.post(("SUBEI", "approver"), body["id"], "reject", {"reason_code": "no_beds"})
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "NOT_YOUR_STEP"
    # A third institution still sees nothing; the new target acts as before.
    assert (await desk.get(("GAOYOU", "approver"), f"/api/v1/referrals/{body['id']}")).status == 404
    assert (await desk.detail(("BAOYING", "approver"), body["id"]))["allowed_actions"]
