"""An Idempotency-Key whose first request died mid-flight (no answer recorded) is free again after the
in-progress timeout, so the client's retry runs instead of being told "in progress" forever."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from miniprogram_api.idempotency import IN_PROGRESS_TIMEOUT
from models import IdempotencyRecord, Referral, WeChatAccount
from tests.referral_support import CLINICAL, Desk, department, institution, make_patient
from timeutil import utcnow


async def test_a_key_left_in_progress_by_a_crash_is_taken_over_after_the_timeout(client):
    desk = await Desk.open(client)
    patient = await make_patient(desk.cipher)
    body = json.dumps({"patient_id": str(patient.public_id), "submit": True, "clinical": CLINICAL,
                       "target_institution_id": str((await institution("SUBEI")).public_id),
                       "target_department_id": str((await department("SUBEI", "CARD")).public_id)}).encode()
    headers = await desk.headers(("DONGGUAN", "doctor"), "crashed-1") | {"Content-Type": "application/json"}
    account = await WeChatAccount.get(openid="demo_dongguan_doctor")
    # What a crashed request leaves behind: the key taken for this very request, no answer recorded.
    fingerprint = hashlib.sha256(b"POST /api/v1/referrals\n" + body).hexdigest()
    stale = await IdempotencyRecord.create(account_id=account.id, key="crashed-1", fingerprint=fingerprint)

    busy = await client.post("/api/v1/referrals", data=body, headers=headers)
    assert busy.status == 409 and (await busy.json())["error"]["code"] == "IDEMPOTENCY_IN_PROGRESS"

    await IdempotencyRecord.filter(id=stale.id).update(
        created_at=utcnow() - timedelta(seconds=IN_PROGRESS_TIMEOUT + 1))
    retried = await client.post("/api/v1/referrals", data=body, headers=headers)
    assert retried.status == 201, await retried.text()
    assert await Referral.all().count() == 1
    replay = await client.post("/api/v1/referrals", data=body, headers=headers)
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
