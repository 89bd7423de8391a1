"""Every administrative change lands in the hash-chained audit log with who, which institution and what
changed (names of what changed for secrets, never a value), in the same transaction: a refused change leaves
no event, and the chain still verifies."""

from __future__ import annotations

import json
from datetime import timedelta

from models import AuditEvent, Department, Institution, OutboxJob, Referral, Staff, WeChatAccount
from referrals.state_machine import Status
from security import audit
from tests.referral_support import Desk
from tests.support import bearer, login_demo, seeded
from tests.test_his_connection import SECRET, generic_subei, path
from tests.test_outbox_admin import kill
from timeutil import china_today


async def events(action: str) -> list[AuditEvent]:
    return list(await AuditEvent.filter(action=action).order_by("id"))


async def test_staff_changes_invitations_and_policy_are_audited_with_the_admin_as_actor(client):
    await seeded(client)
    admin = await login_demo(client, "SUBEI", "admin")
    me = await Staff.get(id=(await WeChatAccount.get(openid="demo_subei_admin")).staff_id)  # type: ignore[attr-defined]
    subei = await Institution.get(code="SUBEI")
    doctor = await Staff.get(id=(await WeChatAccount.get(openid="demo_subei_doctor")).staff_id)  # type: ignore[attr-defined]

    resp = await client.patch(f"/api/v1/admin/staff/{doctor.public_id}",
                              json={"roles": ["doctor", "expert"], "is_active": False}, headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    [changed] = await events("admin.staff_updated")
    assert (changed.actor_staff_id, changed.institution_id, changed.target_id) == (me.id, subei.id,
                                                                                    str(doctor.public_id))
    assert changed.detail["roles"] == {"from": list(doctor.roles), "to": ["doctor", "expert"]}
    assert changed.detail["is_active"] == {"from": True, "to": False} and "title" not in changed.detail

    resp = await client.post("/api/v1/admin/invitations", json={"name": "钱学农", "roles": ["approver"]},
                             headers=bearer(admin))
    assert resp.status == 201
    token = (await resp.json())["invite_token"]
    [invited] = await events("admin.invitation_created")
    assert invited.target_id == (await resp.json())["id"] and invited.detail["roles"] == ["approver"]
    assert token not in json.dumps(invited.detail, ensure_ascii=False)

    resp = await client.put("/api/v1/admin/policy", json={"source_approval_down": True}, headers=bearer(admin))
    assert resp.status == 200
    [policy] = await events("admin.policy_updated")
    assert policy.detail["changes"] == {"source_approval_down": True} and policy.actor_staff_id == me.id
    # A refused policy change writes neither the policy nor an event.
    bad = await client.put("/api/v1/admin/policy", json={"deadline_hours": {"routine": 0}}, headers=bearer(admin))
    assert bad.status == 422 and len(await events("admin.policy_updated")) == 1

    resp = await client.delete(f"/api/v1/admin/staff/{doctor.public_id}", headers=bearer(admin))
    assert resp.status in (200, 204)
    assert [e.target_id for e in await events("admin.staff_removed")] == [str(doctor.public_id)]
    assert (await audit.verify()).valid


async def test_published_beds_are_audited_and_a_refused_publication_leaves_no_event(client):
    await seeded(client)
    approver = await login_demo(client, "SUBEI", "approver")
    department = await Department.filter(institution__code="SUBEI").order_by("id").first()
    day = china_today() + timedelta(days=3)
    url = f"/api/v1/departments/{department.public_id}/capacity"
    resp = await client.put(url, json={"days": [{"date": day.isoformat(), "capacity": 4}]}, headers=bearer(approver))
    assert resp.status == 200
    [published] = await events("admin.capacity_published")
    assert published.target_id == str(department.public_id)
    assert published.detail["beds"] == {day.isoformat(): 4} and published.actor_staff_id is not None
    outside = china_today() + timedelta(days=400)
    refused = await client.put(url, json={"days": [{"date": day.isoformat(), "capacity": 5},
                                                   {"date": outside.isoformat(), "capacity": 5}]},
                               headers=bearer(approver))
    assert refused.status == 422 and len(await events("admin.capacity_published")) == 1


async def test_a_his_connection_change_names_what_changed_and_never_the_secret(client):
    await seeded(client)
    admin = await login_demo(client, "SUBEI", "admin")
    subei = await Institution.get(code="SUBEI")
    settings = await generic_subei(client)
    resp = await client.put(path(subei), headers=bearer(admin), json=settings)
    assert resp.status == 200, await resp.text()
    [changed] = await events("admin.his_connection_changed")
    assert changed.target_id == "SUBEI" and changed.institution_id == subei.id
    assert changed.detail["changed"] == sorted(settings)
    assert SECRET not in json.dumps(changed.detail) and settings["base_url"] not in json.dumps(changed.detail)


async def test_retrying_a_job_is_audited_once_and_not_when_it_is_refused(client):
    desk = await Desk.open(client)
    body = await desk.drive(Status.SCHEDULED, source="DONGGUAN", target="SUBEI")
    referral = await Referral.get(public_id=body["id"])
    admit = await OutboxJob.get(dedupe_key=f"his-admit:{referral.id}")
    await kill(admit)
    retry = f"/api/v1/admin/jobs/{admit.id}/retry"
    await desk.ok(await client.post(retry, headers=await desk.headers(("SUBEI", "admin"))))
    again = await client.post(retry, headers=await desk.headers(("SUBEI", "admin")))
    assert again.status == 409
    [retried] = await events("admin.job_retried")
    subei = await Institution.get(code="SUBEI")
    assert (retried.target_id, retried.institution_id) == (str(admit.id), subei.id)
    assert retried.detail == {"via": "staff", "kind": "his.admit", "attempts": 3}
    assert (await audit.verify()).valid
