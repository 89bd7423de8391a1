"""100 desk scanners check in the same slip at the same moment: exactly one admission, 99 answers of "already
checked in" naming when and by whom (SQLite and PostgreSQL); the referral moves once, one timeline event, one
notification job."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from models import OutboxJob, Referral, ReferralEvent, Slip, SlipState
from tests.support import login_demo
from tests.test_slips import get_slip, scan, schedule

SCANS = 100


@pytest.mark.slow
async def test_one_hundred_concurrent_check_ins_admit_once(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    referral = await Referral.get(public_id=flow["referral_id"])
    version = referral.version

    responses = await asyncio.gather(*[scan(client, clerk, slip["token"]) for _ in range(SCANS)])
    statuses = [r.status for r in responses]
    bodies = [await r.json() for r in responses]
    assert statuses.count(200) == 1, sorted(set(statuses))
    losers = [b["error"] for s, b in zip(statuses, bodies, strict=True) if s != 200]
    assert len(losers) == SCANS - 1
    assert {e["code"] for e in losers} == {"SLIP_ALREADY_CHECKED_IN"}
    assert all("王丽娟" in e["message"] and "已于" in e["message"] for e in losers)
    winner = bodies[statuses.index(200)]
    told = {datetime.fromisoformat(e["detail"]["checked_in_at"]) for e in losers}
    assert told == {datetime.fromisoformat(winner["checked_in_at"])}

    referral = await Referral.get(id=referral.id)
    assert referral.status == "admitted" and referral.version == version + 1
    assert await ReferralEvent.filter(referral_id=referral.id, action="check_in").count() == 1
    # One notification of the check-in for the referring doctor, and no second one.
    assert await OutboxJob.filter(dedupe_key=f"notify:{referral.id}:{version + 1}").count() == 1
    assert not await OutboxJob.filter(dedupe_key=f"notify:{referral.id}:{version + 2}").exists()
    assert (await Slip.get(code=slip["code"])).state == SlipState.USED
    # A later scan gets the same answer, and nothing moves.
    again = await scan(client, clerk, slip["token"])
    assert again.status == 409
    assert (await Referral.get(id=referral.id)).version == version + 1
