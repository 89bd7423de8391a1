"""`Idempotency-Key` on creates and transitions (issue 4 point 8): a retried request gets the first answer again,
never a second referral or a second transition; a reused key with another body is refused; concurrent retries
of one key execute once."""

from __future__ import annotations

import asyncio

from models import IdempotencyRecord, Referral, ReferralEvent
from referrals.state_machine import Status
from tests.referral_support import Desk, make_patient, tomorrow

REFERRER = ("DONGGUAN", "doctor")


async def test_a_retried_create_returns_the_first_referral(client):
    desk = await Desk.open(client)
    patient_id = str((await make_patient(desk.cipher)).public_id)
    first = await desk.create("DONGGUAN", patient_id, submit=True, key="create-1")
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    body = await first.json()
    for _ in range(3):
        again = await desk.create("DONGGUAN", patient_id, submit=True, key="create-1")
        assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert await again.json() == body
    assert await Referral.all().count() == 1
    # Without the key a retry is a new request: here it meets the duplicate check.
    assert (await desk.create("DONGGUAN", patient_id, submit=True)).status == 409


async def test_a_retried_transition_does_not_transition_twice(client):
    desk = await Desk.open(client)
    rid = (await desk.drive(Status.PENDING_TARGET))["id"]
    await desk.publish_beds("SUBEI", "CARD", tomorrow(), 5)
    first = await desk.approve_target("SUBEI", rid, key="approve-1")
    body = await desk.ok(first)
    replay = await desk.approve_target("SUBEI", rid, key="approve-1")
    assert replay.status == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == body
    referral = await Referral.get(public_id=rid)
    assert referral.status == Status.SCHEDULED and referral.version == body["version"] == 4
    assert await ReferralEvent.filter(referral_id=referral.id, action="approve").count() == 2  # source + target
    assert (await desk.beds("SUBEI", "CARD", tomorrow()))["booked"] == 1
    # A retry without the key is a second request and is told the state has moved on.
    plain = await desk.approve_target("SUBEI", rid)
    assert plain.status == 409 and (await plain.json())["error"]["detail"]["status"] == "scheduled"


async def test_a_refusal_is_replayed_as_it_was(client):
    desk = await Desk.open(client)
    rid = (await desk.drive(Status.PENDING_TARGET))["id"]
    first = await desk.approve_target("SUBEI", rid, key="approve-no-beds")
    assert first.status == 409 and (await first.json())["error"]["code"] == "NO_RESERVED_BEDS"
    await desk.publish_beds("SUBEI", "CARD", tomorrow(), 5)
    replay = await desk.approve_target("SUBEI", rid, key="approve-no-beds")
    assert replay.status == 409 and await replay.json() == await first.json()
    # A new decision is a new request with a new key.
    assert (await desk.approve_target("SUBEI", rid, key="approve-with-beds")).status == 200


async def test_the_same_key_with_another_body_is_refused(client):
    desk = await Desk.open(client)
    patient_id = str((await make_patient(desk.cipher)).public_id)
    assert (await desk.create("DONGGUAN", patient_id, key="k-1")).status == 201
    other = await desk.create("DONGGUAN", patient_id, key="k-1", urgency="urgent")
    assert other.status == 422 and (await other.json())["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    # ... or on another path.
    rid = (await Referral.first()).public_id
    resp = await desk.post(REFERRER, str(rid), "submit", {}, key="k-1")
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await Referral.all().count() == 1 and (await Referral.first()).status == Status.DRAFT
    too_long = await desk.create("DONGGUAN", patient_id, key="x" * 129)
    assert too_long.status == 422 and (await too_long.json())["error"]["code"] == "INVALID_IDEMPOTENCY_KEY"


async def test_keys_belong_to_one_account(client):
    desk = await Desk.open(client)
    patient_id = str((await make_patient(desk.cipher)).public_id)
    mine = await desk.ok(await desk.create("DONGGUAN", patient_id, key="shared-key"), 201)
    theirs = await desk.ok(await desk.create("WENHE", patient_id, "GAOYOU", "MED", key="shared-key"), 201)
    assert mine["id"] != theirs["id"] and theirs["source_institution"]["code"] == "WENHE"
    assert await IdempotencyRecord.filter(key="shared-key").count() == 2


async def test_concurrent_retries_of_one_key_execute_once(client):
    desk = await Desk.open(client)
    patient_id = str((await make_patient(desk.cipher)).public_id)
    await desk.session(*REFERRER)
    responses = await asyncio.gather(*[desk.create("DONGGUAN", patient_id, submit=True, key="burst")
                                       for _ in range(10)])
    assert await Referral.all().count() == 1
    created = [await r.json() for r in responses if r.status == 201]
    busy = [await r.json() for r in responses if r.status == 409]
    assert len(created) + len(busy) == 10 and created
    assert {b["id"] for b in created} == {str((await Referral.first()).public_id)}
    assert {b["error"]["code"] for b in busy} <= {"IDEMPOTENCY_IN_PROGRESS"}
    # Once it has finished, every retry gets the answer.
    replay = await desk.create("DONGGUAN", patient_id, submit=True, key="burst")
    assert replay.status == 201 and (await replay.json())["id"] == created[0]["id"]

    # The same for a transition: one cancel, however many retries arrive together.
    rid = created[0]["id"]
    responses = await asyncio.gather(*[desk.post(REFERRER, rid, "cancel", key="cancel-burst") for _ in range(10)])
    assert {r.status for r in responses} <= {200, 409}
    referral = await Referral.get(public_id=rid)
    assert referral.status == Status.CANCELLED
    assert await ReferralEvent.filter(referral_id=referral.id, action="cancel").count() == 1
