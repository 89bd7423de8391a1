"""Reserved beds (issue 4 point 4): target approval books one of a department's reserved referral beds for the
day; fifty approvers at once never overbook, on SQLite and on PostgreSQL; cancelling and no-shows free the bed."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from models import CapacityDay, Referral, ReferralEvent
from referrals import commands
from referrals.clinical import Clinical
from referrals.state_machine import Status
from tests.referral_support import (
    CLINICAL,
    Desk,
    demo_principal,
    department,
    institution,
    make_patient,
    open_beds,
    tomorrow,
)
from timeutil import china_today


async def _pending_at_subei(desk: Desk, count: int) -> list[Referral]:
    """`count` up-referrals DONGGUAN → SUBEI cardiology, each of its own patient, waiting for SUBEI's decision
    (made through the domain: the setup is not what this file tests)."""
    doctor, approver = await demo_principal("DONGGUAN", "doctor"), await demo_principal("DONGGUAN", "approver")
    subei, card = await institution("SUBEI"), await department("SUBEI", "CARD")
    referrals = []
    for _ in range(count):
        patient = await make_patient(desk.cipher)
        referral = await commands.create_referral(doctor, desk.cipher, commands.NewReferral(
            patient_id=patient.public_id, target_institution_id=subei.public_id,
            target_department_id=card.public_id, urgency="routine", clinical=Clinical.model_validate(CLINICAL),
            submit=True))
        referrals.append(await commands.approve(approver, referral.public_id, expected_version=None))
    assert {r.status for r in referrals} == {Status.PENDING_TARGET}
    return referrals


async def test_fifty_concurrent_approvals_against_five_beds_book_exactly_five(client):
    desk = await Desk.open(client)
    day = tomorrow()
    referrals = await _pending_at_subei(desk, 50)
    assert (await desk.publish_beds("SUBEI", "CARD", day, 5))["available"] == 5
    await desk.session("SUBEI", "approver")  # log in once, before the race

    responses = await asyncio.gather(*[desk.approve_target("SUBEI", str(r.public_id), day=day) for r in referrals])
    bodies = [await r.json() for r in responses]
    statuses = [r.status for r in responses]
    assert statuses.count(200) == 5, statuses
    assert statuses.count(409) == 45, statuses
    refused = [b["error"] for b in bodies if "error" in b]
    assert {e["code"] for e in refused} == {"BEDS_FULL"}
    assert refused[0]["detail"] == {"date": day.isoformat(), "capacity": 5}
    assert "已满" in refused[0]["message"]

    beds = await desk.beds("SUBEI", "CARD", day)
    assert (beds["capacity"], beds["booked"], beds["available"]) == (5, 5, 0)
    row = await CapacityDay.get(department__code="CARD", department__institution__code="SUBEI", day=day)
    scheduled = await Referral.filter(status=Status.SCHEDULED)
    assert len(scheduled) == 5 and {r.booking_id for r in scheduled} == {row.id}
    assert await Referral.filter(status=Status.PENDING_TARGET, booking_id=None).count() == 45
    # The refused ones are untouched: same version, no event written for them.
    for referral in await Referral.filter(status=Status.PENDING_TARGET):
        assert referral.version == 3 and await ReferralEvent.filter(referral_id=referral.id).count() == 3


async def test_cancelling_frees_the_bed_for_the_next_referral(client):
    desk = await Desk.open(client)
    day = tomorrow()
    first, second = await _pending_at_subei(desk, 2)
    await desk.publish_beds("SUBEI", "CARD", day, 1)
    await desk.ok(await desk.approve_target("SUBEI", str(first.public_id), day=day))
    full = await desk.approve_target("SUBEI", str(second.public_id), day=day)
    assert full.status == 409 and (await full.json())["error"]["code"] == "BEDS_FULL"
    # Publishing fewer beds than are booked is refused.
    resp = await desk.client.put(f"/api/v1/departments/{(await department('SUBEI', 'CARD')).public_id}/capacity",
                                 json={"days": [{"date": day.isoformat(), "capacity": 0}]},
                                 headers=await desk.headers(("SUBEI", "approver")))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "CAPACITY_BELOW_BOOKED"

    await desk.ok(await desk.post(("DONGGUAN", "doctor"), str(first.public_id), "cancel"))
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 0
    booked = await desk.ok(await desk.approve_target("SUBEI", str(second.public_id), day=day))
    assert booked["status"] == "scheduled"
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 1

    # A no-show frees it too, and only once however often the timer fires.
    await commands.expire(second.id)
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 0
    again = await desk.post(("DONGGUAN", "doctor"), str(second.public_id), "cancel")
    assert again.status == 409
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 0


async def test_booking_needs_a_published_future_day_in_the_targets_department(client):
    desk = await Desk.open(client)
    [referral] = await _pending_at_subei(desk, 1)
    rid, day = str(referral.public_id), tomorrow()
    resp = await desk.post(("SUBEI", "approver"), rid, "approve", {})
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "ADMISSION_REQUIRED"
    resp = await desk.approve_target("SUBEI", rid, day=day)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "NO_RESERVED_BEDS"
    await open_beds("SUBEI", "CARD", day - timedelta(days=2), 3)  # the API publishes no past days; beds left over
    resp = await desk.approve_target("SUBEI", rid, day=china_today() - timedelta(days=1))
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "ADMISSION_DATE_PAST"
    resp = await desk.post(("SUBEI", "approver"), rid, "approve", {"admission": {
        "date": day.isoformat(), "department_id": str((await department("GAOYOU", "MED")).public_id)}})
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "DEPARTMENT_NOT_FOUND"
    assert (await Referral.get(id=referral.id)).status == Status.PENDING_TARGET

    # The approver may admit to another of their departments: its beds are booked, not the referral's.
    await desk.publish_beds("SUBEI", "NEUR", day, 1)
    booked = await desk.ok(await desk.approve_target("SUBEI", rid, day=day, dept="NEUR"))
    assert booked["admission"]["department"]["code"] == "NEUR" and booked["target_department"]["code"] == "CARD"
    assert (await desk.beds("SUBEI", "NEUR", day))["booked"] == 1
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 0


async def test_booking_rolls_back_when_the_approval_loses(client):
    """Two approvals of one referral race: the bed taken by the loser is given back with its transaction."""
    desk = await Desk.open(client)
    [referral] = await _pending_at_subei(desk, 1)
    day = tomorrow()
    await desk.publish_beds("SUBEI", "CARD", day, 10)
    approver = await demo_principal("SUBEI", "approver")
    results = await asyncio.gather(*[commands.approve(approver, referral.public_id, expected_version=None,
                                                      admission=commands.Admission(day)) for _ in range(5)],
                                   return_exceptions=True)
    assert sum(isinstance(r, Referral) for r in results) == 1, results
    assert all(getattr(r, "status", 409) == 409 for r in results if not isinstance(r, Referral))
    assert (await desk.beds("SUBEI", "CARD", day))["booked"] == 1
