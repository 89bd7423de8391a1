"""Timers as outbox jobs, with a moved clock: a referral past its institution's deadline reminds the approvers,
past twice the deadline it tells the admins; a referral that moved on is left alone; the patient hears the day
before admission."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from models import InboxMessage, InstitutionPolicy, OutboxJob, Referral, WeChatAccount
from tests.notify_support import run_jobs, sandbox_messages, subscribe
from tests.referral_support import Desk, bind_patient, institution, tomorrow
from tests.support import login_demo, valid_id
from timeutil import CHINA_TZ

APPROVAL = "rc-referral-approval"


async def inbox_kinds(openid: str) -> list[str]:
    account = await WeChatAccount.get(openid=openid)
    return [m.kind for m in await InboxMessage.filter(account_id=account.id).order_by("id")]


async def timers(referral: Referral) -> dict[str, OutboxJob]:
    return {j.payload["timer"]: j for j in await OutboxJob.filter(kind="notify.timer")
            if j.payload["referral_id"] == referral.id and j.state == "pending"}


async def submitted(client, urgency: str = "urgent") -> tuple[Desk, Referral, str]:
    desk = await Desk.open(client)
    patient = await bind_patient(client, "o_r_patient", "钱多多", valid_id(41))
    patient_id = patient["account"]["patients"][0]["id"]
    dongguan = await institution("DONGGUAN")
    await InstitutionPolicy.filter(institution_id=dongguan.id).delete()
    await InstitutionPolicy.create(institution_id=dongguan.id,
                                   deadline_hours={"routine": 48, "urgent": 6, "emergency": 1})
    for role in ("approver", "admin"):
        await subscribe(client, await login_demo(client, "DONGGUAN", role), f"demo_dongguan_{role}", APPROVAL, 3)
    body = await desk.ok(await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD", submit=True, urgency=urgency),
                         201)
    await run_jobs(client.server.app)
    return desk, await Referral.get(public_id=body["id"]), patient_id


async def test_overdue_reminds_the_approvers_then_escalates_to_the_admins(client):
    desk, referral, _ = await submitted(client)
    started = referral.stage_started_at
    jobs = await timers(referral)
    assert set(jobs) == {"overdue", "escalate"}
    # DONGGUAN's policy gives an urgent referral 6 hours: remind at 6 h, escalate at 12 h.
    assert jobs["overdue"].next_attempt_at == started + timedelta(hours=6)
    assert jobs["escalate"].next_attempt_at == started + timedelta(hours=12)

    await run_jobs(client.server.app, now=started + timedelta(hours=5, minutes=59))
    assert await inbox_kinds("demo_dongguan_approver") == ["referral_todo"]

    await run_jobs(client.server.app, now=started + timedelta(hours=6, minutes=1))
    assert await inbox_kinds("demo_dongguan_approver") == ["referral_todo", "referral_overdue"]
    assert await inbox_kinds("demo_dongguan_admin") == []
    overdue = (await sandbox_messages(client, "demo_dongguan_approver", "subscribe"))[-1]
    assert overdue["data"]["thing6"] == "已超过审批时限，请尽快处理"
    assert overdue["data"]["character_string1"] == referral.code

    await run_jobs(client.server.app, now=started + timedelta(hours=12, minutes=1))
    assert await inbox_kinds("demo_dongguan_admin") == ["referral_escalated"]
    assert await inbox_kinds("demo_dongguan_approver") == ["referral_todo", "referral_overdue"]
    [escalated] = await sandbox_messages(client, "demo_dongguan_admin", "subscribe")
    assert escalated["data"]["thing6"] == "超时未审批，请督办"
    assert escalated["page"] == f"pages/referral/detail?id={referral.public_id}"
    # Nobody at the target was chased for the source's step.
    assert await inbox_kinds("demo_subei_approver") == []


async def test_a_referral_that_moved_on_is_not_chased(client):
    desk, referral, _ = await submitted(client)
    started = referral.stage_started_at
    await desk.ok(await desk.post(("DONGGUAN", "approver"), str(referral.public_id), "approve"))
    await run_jobs(client.server.app)
    moved = await Referral.get(id=referral.id)
    # The target's new stage has timers of its own (SUBEI's default policy: 12 hours for an urgent referral).
    target_timers = await timers(moved)
    assert {k: j.next_attempt_at for k, j in target_timers.items()} == {
        "overdue": moved.stage_started_at + timedelta(hours=12),
        "escalate": moved.stage_started_at + timedelta(hours=24)}
    # The source's timers fire (at 6 h and 12 h) and do nothing.
    await run_jobs(client.server.app, now=started + timedelta(hours=11))
    assert await inbox_kinds("demo_dongguan_approver") == ["referral_todo"]
    assert await inbox_kinds("demo_dongguan_admin") == []
    assert await inbox_kinds("demo_subei_approver") == ["referral_todo"]
    await run_jobs(client.server.app, now=moved.stage_started_at + timedelta(hours=25))
    assert await inbox_kinds("demo_subei_approver") == ["referral_todo", "referral_overdue"]
    assert await inbox_kinds("demo_subei_admin") == ["referral_escalated"]
    assert await inbox_kinds("demo_dongguan_approver") == ["referral_todo"]
    assert await inbox_kinds("demo_dongguan_admin") == []


async def test_the_day_before_admission(client):
    desk, referral, _ = await submitted(client, urgency="routine")
    rid = str(referral.public_id)
    await desk.ok(await desk.post(("DONGGUAN", "approver"), rid, "approve"))
    day = tomorrow() + timedelta(days=3)
    await desk.publish_beds("SUBEI", "CARD", day, 2)
    await desk.ok(await desk.approve_target("SUBEI", rid, day=day))
    await run_jobs(client.server.app)
    assert await inbox_kinds("o_r_patient") == ["admission"]
    eve = datetime.combine(day - timedelta(days=1), time(9), CHINA_TZ)
    assert (await timers(referral))["eve"].next_attempt_at == eve

    await run_jobs(client.server.app, now=eve - timedelta(minutes=1))
    assert await inbox_kinds("o_r_patient") == ["admission"]
    await run_jobs(client.server.app, now=eve + timedelta(minutes=1))
    assert await inbox_kinds("o_r_patient") == ["admission", "admission_eve"]
    account = await WeChatAccount.get(openid="o_r_patient")
    message = await InboxMessage.get(account_id=account.id, kind="admission_eve")
    assert message.title == "明日入院提醒" and message.data["thing5"].startswith("明日入院")
    assert message.data["date4"] == f"{day.year}年{day.month}月{day.day}日"


async def test_no_day_before_reminder_after_a_cancellation(client):
    desk, referral, _ = await submitted(client, urgency="routine")
    rid = str(referral.public_id)
    await desk.ok(await desk.post(("DONGGUAN", "approver"), rid, "approve"))
    day = tomorrow() + timedelta(days=3)
    await desk.publish_beds("SUBEI", "CARD", day, 2)
    await desk.ok(await desk.approve_target("SUBEI", rid, day=day))
    await desk.ok(await desk.post(("DONGGUAN", "doctor"), rid, "cancel"))
    await run_jobs(client.server.app, now=datetime.combine(day, time(12), CHINA_TZ))
    assert await inbox_kinds("o_r_patient") == ["referral_progress"]  # the cancellation, nothing else
