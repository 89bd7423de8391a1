"""`audit-verify` finds an edited timeline event and a tampered audit row."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from audit_verify import verify_all
from models import AuditEvent, Institution, ReferralEvent
from security import audit
from tests.support import bearer, login_code, login_demo, seeded, valid_id


async def _referral(client) -> dict:
    await seeded(client)
    resp = await client.post("/api/v1/auth/bind-patient", json={
        "code": await login_code(client, "o_audit_patient"), "name": "钱审计", "id_number": valid_id(11),
        "phone": "13700001111", "relation": "self"})
    patient_id = (await resp.json())["account"]["patients"][0]["id"]
    doctor = await login_demo(client, "DONGGUAN", "doctor")
    target = await Institution.get(code="SUBEI").prefetch_related("departments")
    resp = await client.post("/api/v1/referrals", headers=bearer(doctor), json={
        "patient_id": patient_id, "target_institution_id": str(target.public_id),
        "target_department_id": str(target.departments[0].public_id), "submit": True,
        "clinical": {"diagnoses": [{"code": "I63.9", "name": "脑梗死"}], "chief_complaint": "左侧肢体无力2天",
                     "referral_reason": "需进一步溶栓评估"}})
    assert resp.status == 201, await resp.text()
    return await resp.json()


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
