"""The tamper-evident timeline and the audit log (issue 4 point 7): editing, deleting or reordering an event is
found by `GET .../timeline/verify` (with the position) and by `python app.py audit-verify`; reading a patient's
unmasked identity is audited and the audit chain stays valid until a row is tampered with."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tortoise.transactions import in_transaction

from models import AuditEvent, Referral, ReferralEvent
from referrals.state_machine import Status
from referrals.timeline import event_hash, verify_referral
from security import audit
from tests.referral_support import Desk
from tests.support import run_app_cli

REFERRER = ("DONGGUAN", "doctor")


async def _verify(desk: Desk, rid: str, who=("SUBEI", "approver")) -> dict:
    return await desk.ok(await desk.get(who, f"/api/v1/referrals/{rid}/timeline/verify"))


async def _scheduled(desk: Desk) -> tuple[str, Referral]:
    rid = (await desk.drive(Status.SCHEDULED))["id"]
    referral = await Referral.get(public_id=rid)
    assert (await _verify(desk, rid)) == {"valid": True, "events": 4, "broken_at": None, "reason": ""}
    return rid, referral


@pytest.mark.parametrize(("field", "value"), [
    ("comment", "已电话沟通"), ("actor_name", "冒名者"), ("actor_institution_name", "扬州市某医院"),
    ("actor_institution_id", 99), ("actor_role", "doctor"), ("to_status", "rejected"),
    ("action", "reject"), ("data", {"admission_date": "2030-01-01"}), ("at", "shift"),
])
async def test_an_edited_event_is_found_with_its_position(client, field, value):
    desk = await Desk.open(client)
    rid, referral = await _scheduled(desk)
    event = await ReferralEvent.get(referral_id=referral.id, seq=3)
    if value == "shift":
        value = event.at - timedelta(hours=1)
    await ReferralEvent.filter(id=event.id).update(**{field: value})
    result = await _verify(desk, rid)
    assert result["valid"] is False and result["broken_at"] == 3 and result["events"] == 4
    assert "第 3 条" in result["reason"] and "篡改" in result["reason"]


async def test_a_deleted_event_is_found_in_the_middle_and_at_the_end(client):
    desk = await Desk.open(client)
    rid, referral = await _scheduled(desk)
    await ReferralEvent.filter(referral_id=referral.id, seq=2).delete()
    result = await _verify(desk, rid, who=REFERRER)
    assert result == {"valid": False, "events": 3, "broken_at": 2, "reason": "第 2 条记录缺失"}

    other_id, other = await _scheduled(desk)
    await ReferralEvent.filter(referral_id=other.id, seq=4).delete()
    result = await _verify(desk, other_id)
    assert result == {"valid": False, "events": 3, "broken_at": 4, "reason": "第 4 条之后的记录缺失"}


async def test_a_rewritten_event_with_a_recomputed_hash_breaks_the_next_link(client):
    """Whoever edits an event and recomputes its own hash is still caught by the event after it."""
    desk = await Desk.open(client)
    rid, referral = await _scheduled(desk)
    event = await ReferralEvent.get(referral_id=referral.id, seq=2)
    forged = event_hash(event.prev_hash, referral_id=referral.id, seq=2, at=event.at, action=event.action,
                        from_status=event.from_status, to_status=event.to_status,
                        actor_staff_id=event.actor_staff_id, actor_name=event.actor_name,
                        actor_role=event.actor_role, actor_institution_id=event.actor_institution_id,
                        actor_institution_name=event.actor_institution_name, comment="补记：患者同意",
                        data=event.data)
    await ReferralEvent.filter(id=event.id).update(comment="补记：患者同意", hash=forged)
    result = await _verify(desk, rid)
    assert result["valid"] is False and result["broken_at"] == 3 and "前序哈希" in result["reason"]


async def test_swapped_events_are_found(client):
    desk = await Desk.open(client)
    rid, referral = await _scheduled(desk)
    second = await ReferralEvent.get(referral_id=referral.id, seq=2)
    third = await ReferralEvent.get(referral_id=referral.id, seq=3)
    async with in_transaction():
        await ReferralEvent.filter(id=second.id).update(seq=99)
        await ReferralEvent.filter(id=third.id).update(seq=2)
        await ReferralEvent.filter(id=second.id).update(seq=3)
    result = await _verify(desk, rid)
    assert result["valid"] is False and result["broken_at"] == 2


async def test_every_transition_keeps_the_chain_valid(client):
    desk = await Desk.open(client)
    for status in (Status.COMPLETED, Status.REJECTED, Status.CANCELLED, Status.EXPIRED):
        referral = await desk.drive(status)
        row = await Referral.get(public_id=referral["id"])
        check = await verify_referral(row.id, row.version)
        assert check.valid and check.events == row.version == len(referral["timeline"])
        hashes = [e["hash"] for e in referral["timeline"]]
        assert len(set(hashes)) == len(hashes) and all(len(h) == 64 for h in hashes)


async def test_reading_the_unmasked_identity_is_audited_and_tampering_is_found(client):
    desk = await Desk.open(client)
    rid, _ = await _scheduled(desk)
    before = await AuditEvent.all().count()
    for who in (("SUBEI", "admission_clerk"), REFERRER, ("SUBEI", "doctor")):
        await desk.ok(await desk.get(who, f"/api/v1/referrals/{rid}/patient-identity"))
    reads = await AuditEvent.filter(action="patient.identity_read").order_by("id")
    assert len(reads) == 3 and await AuditEvent.all().count() == before + 3
    assert {r.institution_id for r in reads} == {(await Referral.get(public_id=rid)).target_institution_id,
                                                 (await Referral.get(public_id=rid)).source_institution_id}
    check = await audit.verify()
    assert check.valid and check.events == before + 3

    await AuditEvent.filter(id=reads[1].id).update(actor_staff_id=None)
    check = await audit.verify()
    assert check.valid is False and check.broken_at == reads[1].id

    await AuditEvent.filter(id=reads[1].id).update(actor_staff_id=reads[1].actor_staff_id)
    assert (await audit.verify()).valid
    # When it happened is part of the record too.
    await AuditEvent.filter(id=reads[0].id).update(at=reads[0].at - timedelta(days=1))
    check = await audit.verify()
    assert check.valid is False and check.broken_at == reads[0].id
    await AuditEvent.filter(id=reads[0].id).update(at=reads[0].at)
    assert (await audit.verify()).valid
    await AuditEvent.filter(id=reads[1].id).delete()
    check = await audit.verify()
    assert check.valid is False and check.broken_at == reads[2].id


async def test_audit_verify_command_reports_a_tampered_timeline(client, settings):
    """`python app.py audit-verify` against this test's own database: 0 when intact, 1 after an edit."""
    desk = await Desk.open(client)
    rid, referral = await _scheduled(desk)
    await desk.ok(await desk.get(REFERRER, f"/api/v1/referrals/{rid}/patient-identity"))

    async def audit_verify() -> tuple[int, str]:
        code, out, err = await run_app_cli(settings, "audit-verify")
        return code, out + err

    code, out = await audit_verify()
    assert code == 0, out
    assert "1 张转诊单，0 张异常" in out and "完整" in out
    await ReferralEvent.filter(referral_id=referral.id, seq=2).update(comment="事后补记")
    code, out = await audit_verify()
    assert code == 1, out
    assert referral.code in out and "第 2 条记录已被篡改" in out


async def test_the_chain_head_rides_on_the_referral_and_a_row_without_it_reads_the_timeline(client):
    desk = await Desk.open(client)
    rid, referral = await _scheduled(desk)
    newest = await ReferralEvent.filter(referral_id=referral.id).order_by("-seq").first()
    assert referral.chain_head == f"{referral.version}:{newest.hash}"
    # A writer that moves the version without the head (a row from before the column, an older process):
    # the next event must still chain to the newest event, read from the timeline.
    await Referral.filter(id=referral.id).update(chain_head=f"{referral.version - 1}:{'f' * 64}")
    body = await desk.ok(await desk.post(REFERRER, rid, "cancel", {"comment": "患者决定暂不转诊"}))
    assert body["status"] == "cancelled"
    assert (await _verify(desk, rid)) == {"valid": True, "events": 5, "broken_at": None, "reason": ""}
    row = await Referral.get(id=referral.id)
    assert row.chain_head == f"5:{body['timeline'][-1]['hash']}"
