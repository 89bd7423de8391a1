"""`audit-verify` finds an edited timeline event and a tampered audit row."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from audit_verify import verify_all
from models import AuditEvent, ReferralEvent
from referrals.state_machine import Status
from security import audit
from tests.referral_support import Desk


async def _referral(client) -> dict:
    return await (await Desk.open(client)).drive(Status.PENDING_SOURCE)


async def test_audit_verify_reports_tampering(client):
    referral = await _referral(client)
    async with in_transaction():
        await audit.record("patient.identity_read", "patient", "x", detail={"why": "test"})
    lines: list[str] = []
    assert await verify_all(out=lines.append) == 0, lines
    assert "0 张异常" in lines[-1] and "完整" in lines[-1]

    await ReferralEvent.filter(referral__public_id=referral["id"], seq=1).update(comment="改过")
    await AuditEvent.all().update(target_id="y")
    lines.clear()
    assert await verify_all(out=lines.append) == 1
    assert any(referral["code"] in line for line in lines)
    assert "已被篡改" in lines[-1]
