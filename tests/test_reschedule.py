"""Rescheduling a scheduled admission: the old bed is freed, a new one booked, the slip reissued."""

from __future__ import annotations

from datetime import timedelta

from models import Slip, SlipState
from referrals.state_machine import Status
from tests.referral_support import Desk, tomorrow


async def test_target_approver_moves_the_admission_and_the_slip_follows(client):
    desk = await Desk.open(client)
    day, later = tomorrow(), tomorrow() + timedelta(days=1)
    referral = await desk.drive(Status.SCHEDULED, day=day)
    rid = referral["id"]
    old_slip = await Slip.get(referral__public_id=rid, state=SlipState.ACTIVE)
    await desk.publish_beds("SUBEI", "CARD", later, 1)

    body = {"admission": {"date": later.isoformat()}, "comment": "患者要求延后一天"}
    assert (await desk.post(("DONGGUAN", "doctor"), rid, "reschedule", body)).status == 403
    moved = await desk.ok(await desk.post(("SUBEI", "approver"), rid, "reschedule", body))
    assert moved["status"] == "scheduled"
    assert moved["admission"]["date"] == later.isoformat()
    event = moved["timeline"][-1]
    assert event["action"] == "reschedule" and event["data"]["previous_date"] == day.isoformat()
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 0
    assert (await desk.beds("SUBEI", "CARD", later))["booked"] == 1

    slips = await Slip.filter(referral__public_id=rid).order_by("id")
    assert [s.state for s in slips] == [SlipState.REVOKED, SlipState.ACTIVE]
    assert slips[0].id == old_slip.id and slips[0].revoked_reason == "rescheduled"
    assert slips[1].scheduled_date == later

    # No bed on the day asked for: refused, and the current booking stays as it was.
    refused = await desk.post(("SUBEI", "approver"), rid, "reschedule",
                              {"admission": {"date": (later + timedelta(days=5)).isoformat()}})
    assert refused.status == 409
    assert (await refused.json())["error"]["code"] == "NO_RESERVED_BEDS"
    assert (await desk.beds("SUBEI", "CARD", later))["booked"] == 1
    detail = await desk.detail(("SUBEI", "approver"), rid)
    assert detail["admission"]["date"] == later.isoformat() and "reschedule" in detail["allowed_actions"]
