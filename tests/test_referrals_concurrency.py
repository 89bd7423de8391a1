"""Two approvers acting at once on one referral (issue 4 point 8): exactly one wins, the other gets 409 with the
referral's current state; a stale version is refused the same way. Through the real app, on both backends."""

from __future__ import annotations

import asyncio

from models import Referral, ReferralEvent
from referrals.state_machine import Status
from tests.referral_support import Desk, add_staff, tomorrow


async def _two_approvers(desk: Desk, code: str) -> tuple[str, str]:
    """The demo approver of `code` and a second one, both logged in."""
    await add_staff(code, "approver", f"o_{code.lower()}_approver_2", name="孙审批")
    await desk.session(code, "approver")
    await desk.session_of(f"o_{code.lower()}_approver_2")
    return (code, "approver"), f"o_{code.lower()}_approver_2"


async def test_two_target_approvers_at_once_one_wins_the_other_sees_the_new_state(client):
    desk = await Desk.open(client)
    first, second = await _two_approvers(desk, "SUBEI")
    await desk.publish_beds("SUBEI", "CARD", tomorrow(), 20)
    for _ in range(5):
        rid = (await desk.drive(Status.PENDING_TARGET))["id"]
        responses = await asyncio.gather(desk.approve_target("SUBEI", rid, who=first),
                                         desk.approve_target("SUBEI", rid, who=second, bed="3床"))
        statuses = sorted(r.status for r in responses)
        assert statuses == [200, 409], statuses
        won, lost = sorted(responses, key=lambda r: r.status)
        winner, error = await won.json(), (await lost.json())["error"]
        assert error["code"] in ("INVALID_STATE", "CONCURRENT_UPDATE")
        assert error["detail"]["status"] == "scheduled" == winner["status"]
        assert error["detail"]["version"] == winner["version"] == 4
        assert error["detail"]["status_name"] == "已预约入院"
        referral = await Referral.get(public_id=rid)
        assert await ReferralEvent.filter(referral_id=referral.id).count() == 4
    # Each referral took one bed, never two.
    assert (await desk.beds("SUBEI", "CARD", tomorrow()))["booked"] == 5


async def test_approve_and_reject_at_once_one_decision_stands(client):
    desk = await Desk.open(client)
    first, second = await _two_approvers(desk, "DONGGUAN")
    for _ in range(4):
        rid = (await desk.drive(Status.PENDING_SOURCE))["id"]
        responses = await asyncio.gather(desk.post(first, rid, "approve", {"comment": "同意"}),
                                         desk.post(second, rid, "reject", {"reason_code": "not_indicated"}))
        assert sorted(r.status for r in responses) == [200, 409]
        won, lost = sorted(responses, key=lambda r: r.status)
        winner, loser = await won.json(), (await lost.json())["error"]
        assert winner["status"] in ("pending_target", "rejected")
        assert loser["detail"]["status"] == winner["status"]
        detail = await desk.detail(("DONGGUAN", "doctor"), rid)
        assert detail["status"] == winner["status"] and len(detail["timeline"]) == 3


async def test_a_stale_version_is_refused_with_the_current_state(client):
    desk = await Desk.open(client)
    first, second = await _two_approvers(desk, "DONGGUAN")
    rid = (await desk.drive(Status.PENDING_SOURCE))["id"]
    seen_by_both = (await desk.detail(first, rid))["version"]
    await desk.ok(await desk.post(first, rid, "approve", {"version": seen_by_both}))
    resp = await desk.post(second, rid, "reject", {"version": seen_by_both, "reason_code": "no_beds"})
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "VERSION_CONFLICT" and "刷新" in error["message"]
    assert error["detail"] == {"status": "pending_target", "version": seen_by_both + 1, "status_name": "待接收机构审批"}
