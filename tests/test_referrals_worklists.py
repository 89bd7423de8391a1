"""Worklists through the real app (issue 4 point 5): the four boxes, filters, cursor pages, badge counts and
the overdue flag against the responsible institution's deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models import Referral
from referrals.state_machine import Status
from tests.referral_support import Desk, make_patient, patient_account
from timeutil import CHINA_TZ

LIST = "/api/v1/referrals"


async def _ids(desk: Desk, who, **params) -> list[str]:
    page = await desk.ok(await desk.get(who, LIST, **params))
    return [r["id"] for r in page["items"]]


async def test_boxes_show_each_side_its_own_work(client):
    desk = await Desk.open(client)
    draft = await desk.drive(Status.DRAFT)                                    # DONGGUAN → SUBEI
    at_source = await desk.drive(Status.PENDING_SOURCE)
    at_target = await desk.drive(Status.PENDING_TARGET)
    scheduled = await desk.drive(Status.SCHEDULED)
    down = await desk.drive(Status.PENDING_TARGET, source="SUBEI", target="DONGGUAN", dept="GP")
    elsewhere = await desk.drive(Status.PENDING_TARGET, source="WENHE", target="GAOYOU", dept="MED")

    # Newest first; drafts are the source's business only.
    assert await _ids(desk, ("DONGGUAN", "doctor"), box="outgoing") == [
        scheduled["id"], at_target["id"], at_source["id"], draft["id"]]
    assert await _ids(desk, ("DONGGUAN", "doctor"), box="incoming") == [down["id"]]
    assert await _ids(desk, ("SUBEI", "approver"), box="incoming") == [
        scheduled["id"], at_target["id"], at_source["id"]]
    assert await _ids(desk, ("SUBEI", "doctor"), box="outgoing") == [down["id"]]
    # To approve: what waits for this institution's decision, nothing else.
    assert await _ids(desk, ("DONGGUAN", "approver"), box="to_approve") == [down["id"], at_source["id"]]
    assert await _ids(desk, ("SUBEI", "approver"), box="to_approve") == [at_target["id"]]
    assert await _ids(desk, ("GAOYOU", "approver"), box="to_approve") == [elsewhere["id"]]
    resp = await desk.get(("SUBEI", "doctor"), LIST, box="to_approve")
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "ROLE_REQUIRED"
    resp = await desk.get(("SUBEI", "doctor"), LIST, box="everything")
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "INVALID_BOX"

    row = (await desk.ok(await desk.get(("SUBEI", "approver"), LIST, box="incoming")))["items"][0]
    assert row["patient_name"] == "周*华" and row["status_name"] == "已预约入院"
    assert row["source_institution"]["code"] == "DONGGUAN" and row["target_department"]["code"] == "CARD"
    assert row["admission_date"] and row["direction_name"] == "上转"


async def test_badge_counts_count_open_work(client):
    desk = await Desk.open(client)
    await desk.drive(Status.DRAFT)
    await desk.drive(Status.PENDING_SOURCE)
    await desk.drive(Status.PENDING_TARGET)
    await desk.drive(Status.SCHEDULED)
    await desk.drive(Status.ADMITTED)
    await desk.drive(Status.COMPLETED)
    await desk.drive(Status.REJECTED)
    await desk.drive(Status.CANCELLED)
    counts = (await desk.ok(await desk.get(("DONGGUAN", "approver"), LIST, box="outgoing")))["counts"]
    assert counts == {"outgoing": 4, "incoming": 0, "to_approve": 1}
    counts = (await desk.ok(await desk.get(("SUBEI", "approver"), LIST, box="incoming")))["counts"]
    assert counts == {"outgoing": 0, "incoming": 4, "to_approve": 1}
    counts = (await desk.ok(await desk.get(("SUBEI", "doctor"), LIST, box="incoming")))["counts"]
    assert counts == {"outgoing": 0, "incoming": 4}  # no approver badge for a doctor


async def test_date_filters_use_the_china_day_whatever_the_utc_day(client):
    desk = await Desk.open(client)
    who = ("DONGGUAN", "doctor")
    early, late = await desk.drive(Status.PENDING_SOURCE), await desk.drive(Status.PENDING_SOURCE)
    # 01:30 and 23:30 in China on 30 November: the first is still 29 November in UTC.
    await Referral.filter(public_id=early["id"]).update(created_at=datetime(2026, 11, 29, 17, 30, tzinfo=UTC))
    await Referral.filter(public_id=late["id"]).update(created_at=datetime(2026, 11, 30, 15, 30, tzinfo=UTC))
    day = {"from": "2026-11-30", "to": "2026-11-30"}
    assert await _ids(desk, who, box="outgoing", **day) == [late["id"], early["id"]]
    assert await _ids(desk, who, box="outgoing", **{"from": "2026-11-29", "to": "2026-11-29"}) == []
    assert await _ids(desk, who, box="outgoing", **{"from": "2026-12-01"}) == []


async def test_patients_box_and_badge(client):
    desk = await Desk.open(client)
    patient = await make_patient(desk.cipher, "陈自己")
    await patient_account(patient, "o_patient_box")
    pid = str(patient.public_id)
    await desk.drive(Status.DRAFT, patient_id=pid, target="BAOYING", dept="MED")
    open_one = await desk.drive(Status.PENDING_SOURCE, patient_id=pid, target="GAOYOU", dept="MED")
    closed = await desk.drive(Status.COMPLETED, patient_id=pid)
    page = await desk.ok(await desk.get("o_patient_box", LIST, box="mine"))
    assert [r["id"] for r in page["items"]] == [closed["id"], open_one["id"]]
    assert page["counts"] == {"mine": 1}
    assert await _ids(desk, "o_patient_box", box="mine", status="completed") == [closed["id"]]


async def test_staff_asking_for_the_patients_box_are_pointed_to_their_own(client):
    desk = await Desk.open(client)
    resp = await desk.get(("SUBEI", "approver"), LIST, box="mine")
    assert resp.status == 403
    error = (await resp.json())["error"]
    assert error["code"] == "PATIENTS_ONLY" and "医务人员请查看" in error["message"] and "绑定" not in error["message"]
    assert error["detail"]["staff_boxes"] == ["outgoing", "incoming", "to_approve"]
    patient = await make_patient(desk.cipher, "陈未绑")
    await patient_account(patient, "o_box_bound")
    resp = await desk.get("o_box_bound", LIST, box="outgoing")  # and patients asking for a staff box
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "STAFF_ONLY"


async def test_filters_status_direction_dates_and_text(client):
    desk = await Desk.open(client)
    zhou = str((await make_patient(desk.cipher, "周明华")).public_id)
    wu = str((await make_patient(desk.cipher, "吴晓梅")).public_id)
    up_pending = await desk.drive(Status.PENDING_SOURCE, patient_id=zhou)
    up_done = await desk.drive(Status.SCHEDULED, patient_id=wu)
    lateral = await desk.drive(Status.PENDING_SOURCE, target="WENHE", dept="GP", patient_id=wu)
    who = ("DONGGUAN", "doctor")

    assert await _ids(desk, who, box="outgoing", status="pending_source") == [lateral["id"], up_pending["id"]]
    assert await _ids(desk, who, box="outgoing", status="scheduled,pending_source") == [
        lateral["id"], up_done["id"], up_pending["id"]]
    resp = await desk.get(who, LIST, box="outgoing", status="pending,done")
    assert resp.status == 422 and (await resp.json())["error"]["detail"]["unknown"] == ["done", "pending"]
    assert await _ids(desk, who, box="outgoing", direction="lateral") == [lateral["id"]]
    assert await _ids(desk, who, box="outgoing", direction="up") == [up_done["id"], up_pending["id"]]
    assert (await desk.get(who, LIST, box="outgoing", direction="sideways")).status == 422

    # Text: a code prefix, or part of the patient's real name (never shown unmasked in the list).
    assert await _ids(desk, who, box="outgoing", q=up_done["code"]) == [up_done["id"]]
    assert await _ids(desk, who, box="outgoing", q=up_done["code"][:8].lower()) == [
        lateral["id"], up_done["id"], up_pending["id"]]
    assert await _ids(desk, who, box="outgoing", q="晓梅") == [lateral["id"], up_done["id"]]
    assert await _ids(desk, who, box="outgoing", q="周明华") == [up_pending["id"]]
    assert await _ids(desk, who, box="outgoing", q="不存在") == []
    for wildcard in ("%", "_", "ZZ%", "周%华"):  # LIKE wildcards are text here, not patterns
        assert await _ids(desk, who, box="outgoing", q=wildcard) == [], wildcard

    # Dates are days in China, inclusive at both ends.
    # "Today" is the China day the referrals were made on (a run across midnight in China must not flake).
    made = (await Referral.get(public_id=lateral["id"])).created_at
    await Referral.filter(public_id=up_pending["id"]).update(created_at=(made - timedelta(days=10)).astimezone(UTC))
    today = made.astimezone(CHINA_TZ).date()
    ten_days_ago = today - timedelta(days=10)
    assert await _ids(desk, who, box="outgoing", **{"from": today.isoformat()}) == [lateral["id"], up_done["id"]]
    assert await _ids(desk, who, box="outgoing", to=(today - timedelta(days=1)).isoformat()) == [up_pending["id"]]
    assert await _ids(desk, who, box="outgoing", **{"from": ten_days_ago.isoformat(),
                                                    "to": ten_days_ago.isoformat()}) == [up_pending["id"]]
    assert await _ids(desk, who, box="outgoing", direction="up", status="pending_source",
                      **{"from": ten_days_ago.isoformat()}) == [up_pending["id"]]
    assert (await desk.get(who, LIST, box="outgoing", **{"from": "yesterday"})).status == 422


async def test_cursor_pages_walk_everything_once(client):
    desk = await Desk.open(client)
    made = [(await desk.drive(Status.PENDING_SOURCE))["id"] for _ in range(7)]
    who = ("DONGGUAN", "doctor")
    seen, cursor, pages = [], None, 0
    while True:
        params = {"box": "outgoing", "limit": "3"} | ({"cursor": cursor} if cursor else {})
        page = await desk.ok(await desk.get(who, LIST, **params))
        seen += [r["id"] for r in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(made))
    # Filters hold across pages; a bad cursor or limit is refused.
    first = await desk.ok(await desk.get(who, LIST, box="outgoing", limit="2", q="zz"))
    assert len(first["items"]) == 2 and first["next_cursor"]
    for bad in ({"cursor": "!!!"}, {"cursor": "bm90LWEtbnVtYmVy"}, {"limit": "0"}, {"limit": "101"}):
        assert (await desk.get(who, LIST, box="outgoing", **bad)).status == 422, bad


async def test_referrals_past_their_deadline_are_flagged(client):
    desk = await Desk.open(client)
    routine = await desk.drive(Status.PENDING_SOURCE)
    urgent_body = await desk.ok(await desk.create("DONGGUAN", str((await make_patient(desk.cipher)).public_id),
                                                  urgency="urgent", submit=True), 201)
    fresh = await desk.drive(Status.PENDING_SOURCE)
    scheduled = await desk.drive(Status.SCHEDULED)

    async def rows() -> dict[str, dict]:
        page = await desk.ok(await desk.get(("DONGGUAN", "approver"), LIST, box="outgoing"))
        return {r["id"]: r for r in page["items"]}

    assert not any(r["overdue"] for r in (await rows()).values())
    # Routine: 48 h by default; urgent: 12 h. Thirteen hours late makes only the urgent one overdue.
    now = datetime.now(UTC)
    for rid in (routine["id"], urgent_body["id"]):
        await Referral.filter(public_id=rid).update(stage_started_at=now - timedelta(hours=13))
    await Referral.filter(public_id=scheduled["id"]).update(stage_started_at=now - timedelta(days=30))
    listed = await rows()
    assert listed[urgent_body["id"]]["overdue"] is True and listed[routine["id"]]["overdue"] is False
    assert not listed[fresh["id"]]["overdue"] and not listed[scheduled["id"]]["overdue"]
    assert listed[scheduled["id"]]["deadline_at"] is None  # nobody owes an answer once it is scheduled
    deadline = datetime.fromisoformat(listed[urgent_body["id"]]["deadline_at"])
    assert abs((deadline - (now - timedelta(hours=13) + timedelta(hours=12))).total_seconds()) < 1

    await Referral.filter(public_id=routine["id"]).update(stage_started_at=now - timedelta(hours=49))
    assert (await rows())[routine["id"]]["overdue"] is True
    assert (await desk.detail(("DONGGUAN", "doctor"), routine["id"]))["overdue"] is True
    # The deadline is the responsible institution's policy: DONGGUAN allows 72 h for routine ones.
    resp = await desk.client.put("/api/v1/admin/policy", headers=await desk.headers(("DONGGUAN", "admin")),
                                 json={"deadline_hours": {"routine": 72, "urgent": 12, "emergency": 2}})
    assert resp.status == 200
    assert (await rows())[routine["id"]]["overdue"] is False
    # Once at the target, the target's deadline counts from the source's approval.
    await desk.ok(await desk.post(("DONGGUAN", "approver"), routine["id"], "approve"))
    assert (await rows())[routine["id"]]["overdue"] is False
    await Referral.filter(public_id=routine["id"]).update(stage_started_at=now - timedelta(hours=49))
    assert (await rows())[routine["id"]]["overdue"] is True
