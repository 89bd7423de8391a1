"""The paper's flow end to end through the real app: a community doctor scans a patient, refers up to the
tertiary hospital, the community approver approves, the tertiary approver books a reserved bed; the timeline
shows every step with both institutions' names and its hash chain verifies. Plus the other directions."""

from __future__ import annotations

from models import CapacityDay, OutboxJob, Referral
from referrals.state_machine import Status
from tests.referral_support import Desk, open_beds, scan_in, tomorrow

DONGGUAN_NAME = "扬州市东关街道社区卫生服务中心"
SUBEI_NAME = "江苏省苏北人民医院"


async def test_the_papers_flow_scan_refer_up_approve_and_book(client):
    desk = await Desk.open(client)
    doctor = await desk.session("DONGGUAN", "doctor")

    # The community doctor scans the patient's HIS card: the patient is put on the platform, the form pre-filled.
    scanned = await scan_in(client, doctor, "DONGGUAN")
    patient_id, prefill = scanned["patient"]["id"], scanned["prefill"]
    assert prefill["diagnoses"] and prefill["chief_complaint"]
    clinical = prefill | {"referral_reason": "病情需上级医院进一步诊治"}

    created = await desk.ok(await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD", clinical=clinical,
                                              urgency="urgent", contact_phone="13912345678", submit=True), 201)
    rid = created["id"]
    assert created["status"] == "pending_source" and created["direction"] == "up"
    assert created["source_institution"]["name"] == DONGGUAN_NAME
    assert created["target_institution"]["name"] == SUBEI_NAME
    assert created["clinical"]["diagnoses"] == prefill["diagnoses"]
    assert created["contact_phone"] == "139****5678"
    assert created["patient"]["name"] != scanned["person"]["name"] and "*" in created["patient"]["name"]
    assert created["allowed_actions"] == ["cancel"]

    # The community approver sees it in their box and approves.
    box = await desk.ok(await desk.get(("DONGGUAN", "approver"), "/api/v1/referrals", box="to_approve"))
    assert [r["id"] for r in box["items"]] == [rid] and box["counts"]["to_approve"] == 1
    seen = await desk.detail(("DONGGUAN", "approver"), rid)
    assert seen["allowed_actions"] == ["approve", "reject"]
    approved = await desk.ok(await desk.post(("DONGGUAN", "approver"), rid, "approve",
                                             {"comment": "同意上转", "version": seen["version"]}))
    assert approved["status"] == "pending_target"

    # The tertiary approver books a bed from the reserved ones.
    day = tomorrow()
    await open_beds("SUBEI", "CARD", day, 3)
    incoming = await desk.ok(await desk.get(("SUBEI", "approver"), "/api/v1/referrals", box="to_approve"))
    assert [r["id"] for r in incoming["items"]] == [rid]
    assert (await desk.detail(("SUBEI", "approver"), rid))["allowed_actions"] == ["approve", "reject", "redirect"]
    booked = await desk.ok(await desk.approve_target("SUBEI", rid, day=day, dept="CARD", ward="心内科二病区",
                                                     bed="12床", comment="已安排入院"))
    assert booked["status"] == "scheduled" and booked["fhir_status"] == "accepted"
    assert booked["admission"]["date"] == day.isoformat()
    assert booked["admission"]["department"]["name"] == "心血管内科"
    assert (booked["admission"]["ward"], booked["admission"]["bed"]) == ("心内科二病区", "12床")
    capacity_row = await CapacityDay.get(department__code="CARD", department__institution__code="SUBEI", day=day)
    assert capacity_row.booked == 1

    # Both institutions see the same status and the same timeline, with both names on it.
    referrer_view = await desk.detail(("DONGGUAN", "doctor"), rid)
    target_view = await desk.detail(("SUBEI", "approver"), rid)
    assert referrer_view["timeline"] == target_view["timeline"]
    assert referrer_view["status"] == target_view["status"] == "scheduled"
    steps = [(e["action"], e["from_status"], e["to_status"], e["actor"]["institution"], e["actor"]["role"])
             for e in referrer_view["timeline"]]
    assert steps == [
        ("create", None, "draft", DONGGUAN_NAME, "doctor"),
        ("submit", "draft", "pending_source", DONGGUAN_NAME, "doctor"),
        ("approve", "pending_source", "pending_target", DONGGUAN_NAME, "approver"),
        ("approve", "pending_target", "scheduled", SUBEI_NAME, "approver"),
    ]
    timeline = referrer_view["timeline"]
    assert [e["seq"] for e in timeline] == [1, 2, 3, 4]
    assert timeline[0]["data"]["target_institution"] == SUBEI_NAME
    assert timeline[2]["comment"] == "同意上转"
    assert timeline[3]["data"]["admission_date"] == day.isoformat() and timeline[3]["comment"] == "已安排入院"
    assert all(e["actor"]["name"] for e in timeline)

    for who in (("DONGGUAN", "doctor"), ("SUBEI", "approver")):
        check = await desk.ok(await desk.get(who, f"/api/v1/referrals/{rid}/timeline/verify"))
        assert check == {"valid": True, "events": 4, "broken_at": None, "reason": ""}

    # The side effects left through the outbox: one notification per transition, one HIS admission.
    referral = await Referral.get(public_id=rid)
    jobs = [j for j in await OutboxJob.all() if j.payload.get("referral_id") == referral.id]
    assert sorted(j.kind for j in jobs) == ["his.admit", "notify.referral_event", "notify.referral_event",
                                            "notify.referral_event"]


async def test_down_referral_skips_the_source_approval_until_the_policy_asks_for_it(client):
    desk = await Desk.open(client)
    down = await desk.drive(Status.PENDING_TARGET, source="SUBEI", target="DONGGUAN", dept="REHA")
    assert down["direction"] == "down"
    assert [e["action"] for e in down["timeline"]] == ["create", "submit"]

    admin = ("SUBEI", "admin")
    policy = await desk.ok(await desk.client.put("/api/v1/admin/policy", json={"source_approval_down": True},
                                                 headers=await desk.headers(admin)))
    assert policy["source_approval_down"] is True
    strict = await desk.drive(Status.PENDING_SOURCE, source="SUBEI", target="DONGGUAN", dept="REHA")
    assert strict["direction"] == "down" and strict["status"] == "pending_source"
    # A referral already under way keeps the path it started with.
    assert (await desk.detail(("SUBEI", "doctor"), down["id"]))["status"] == "pending_target"
    done = await desk.drive(Status.SCHEDULED, source="SUBEI", target="DONGGUAN", dept="REHA")
    assert [e["action"] for e in done["timeline"]] == ["create", "submit", "approve", "approve"]


async def test_lateral_referral_between_peers_passes_both_approvals(client):
    desk = await Desk.open(client)
    lateral = await desk.drive(Status.SCHEDULED, source="GAOYOU", target="BAOYING", dept="MED")
    assert lateral["direction"] == "lateral"
    assert [(e["action"], e["actor"]["institution"]) for e in lateral["timeline"]][-2:] == [
        ("approve", "高邮市人民医院"), ("approve", "宝应县人民医院")]
    # Any member may refer to any other member, not only to and from the lead hospital.
    county_down = await desk.drive(Status.PENDING_TARGET, source="BAOYING", target="SANWAN", dept="GP")
    assert county_down["direction"] == "down"


async def test_the_loop_closes_admission_and_completion(client):
    desk = await Desk.open(client)
    done = await desk.drive(Status.COMPLETED)
    assert done["status"] == "completed" and done["fhir_status"] == "completed"
    assert [e["action"] for e in done["timeline"]] == ["create", "submit", "approve", "approve", "check_in",
                                                       "complete"]
    check = await desk.ok(await desk.get(("SUBEI", "doctor"), f"/api/v1/referrals/{done['id']}/timeline/verify"))
    assert check["valid"] and check["events"] == 6
