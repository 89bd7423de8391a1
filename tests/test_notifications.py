"""Who is told what at each transition, through the real app: referrals created and decided through the API,
jobs run as a dispatcher would, messages read back from the WeChat sandbox and from the inbox API."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from directory.seed import demo_openid
from models import InboxMessage, InstitutionPolicy, OutboxJob, Referral, Staff, WeChatAccount
from notifications.recipients import referrer_accounts
from referrals.state_machine import Status
from tests.notify_support import run_jobs, sandbox_messages, subscribe
from tests.referral_support import Desk, add_staff, bind_family, bind_patient, institution, tomorrow
from tests.support import bearer, login, login_demo, valid_id
from timeutil import CHINA_TZ

APPROVAL, PROGRESS, ADMISSION = "rc-referral-approval", "rc-referral-progress", "rc-admission-notice"
PATIENT_NAME = "陆文龙"


class World:
    """A DONGGUAN → SUBEI up-referral's cast: everyone logged in and subscribed to the templates they need."""

    def __init__(self, client, desk: Desk) -> None:
        self.client, self.desk = client, desk
        self.sessions: dict[str, dict] = {}

    async def subscribe(self, openid: str, session: dict, *templates: str, times: int = 3) -> None:
        self.sessions[openid] = session
        for template in templates:
            await subscribe(self.client, session, openid, template, times)

    async def messages(self, openid: str) -> list[dict]:
        return await sandbox_messages(self.client, openid, "subscribe")

    async def inbox(self, openid: str) -> dict:
        resp = await self.client.get("/api/v1/inbox", headers=bearer(self.sessions[openid]))
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def cast(client) -> tuple[World, str]:
    """The demo consortium, a bound patient with a family member, a second DONGGUAN approver, and DONGGUAN's
    policy letting its expert approve too. Returns the world and the patient's platform id."""
    desk = await Desk.open(client)
    world = World(client, desk)
    patient = await bind_patient(client, "o_n_patient", PATIENT_NAME, valid_id(31))
    patient_id = patient["account"]["patients"][0]["id"]
    family = await bind_family(client, "o_n_family", PATIENT_NAME, valid_id(31), "child", patient)
    await add_staff("DONGGUAN", "approver", "o_n_approver2", name="孙副科长")
    dongguan = await institution("DONGGUAN")
    await InstitutionPolicy.filter(institution_id=dongguan.id).delete()
    await InstitutionPolicy.create(institution_id=dongguan.id, approver_roles=["approver", "expert"])
    await world.subscribe("o_n_patient", patient, PROGRESS, ADMISSION)
    await world.subscribe("o_n_family", family, PROGRESS, ADMISSION)
    await world.subscribe("o_n_approver2", await login(client, "o_n_approver2"), APPROVAL, PROGRESS)
    for code, role in (("DONGGUAN", "doctor"), ("DONGGUAN", "approver"), ("DONGGUAN", "expert"),
                       ("DONGGUAN", "admin"), ("SUBEI", "approver"), ("SUBEI", "admin"), ("BAOYING", "approver")):
        await world.subscribe(f"demo_{code.lower()}_{role}", await login_demo(client, code, role), APPROVAL,
                              PROGRESS)
    return world, patient_id


async def _no_dead_jobs() -> None:
    dead = await OutboxJob.filter(state="dead").values_list("kind", "last_error")
    assert not dead, dead


async def test_each_transition_reaches_the_right_people(client):
    world, patient_id = await cast(client)
    desk = world.desk
    body = await desk.ok(await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD", submit=True), 201)
    rid = body["id"]
    assert body["status"] == Status.PENDING_SOURCE
    await run_jobs(client.server.app)
    await _no_dead_jobs()

    # Submitted: every DONGGUAN approver (the policy lets the expert approve too), and nobody else.
    for openid in ("demo_dongguan_approver", "o_n_approver2", "demo_dongguan_expert"):
        [message] = await world.messages(openid)
        assert message["template_id"] == APPROVAL
        assert message["page"] == f"pages/referral/detail?id={rid}"
        assert message["data"]["character_string1"] == body["code"]
        assert message["data"]["thing2"] == "陆*龙"
        assert message["data"]["thing3"] == "转往 苏北医院"
        assert message["data"]["thing6"].startswith("请于") and message["data"]["thing6"].endswith("前审批")
    for openid in ("demo_dongguan_doctor", "demo_subei_approver", "o_n_patient", "demo_dongguan_admin"):
        assert await world.messages(openid) == []

    # Source approval: SUBEI's approver is next; the doctor hears of the decision.
    await desk.ok(await desk.post(("DONGGUAN", "approver"), rid, "approve"))
    await run_jobs(client.server.app)
    [todo] = await world.messages("demo_subei_approver")
    assert todo["template_id"] == APPROVAL and todo["data"]["thing3"] == "来自 东关社区"
    [decided] = await world.messages("demo_dongguan_doctor")
    assert decided["template_id"] == PROGRESS
    assert decided["data"]["phrase3"] == "初审通过" and decided["data"]["thing2"] == "陆*龙"
    assert await world.messages("o_n_patient") == []

    # Target acceptance: the doctor, and the patient and family with date, place and what to bring.
    day = tomorrow() + timedelta(days=2)
    await desk.publish_beds("SUBEI", "CARD", day, 3)
    await desk.ok(await desk.approve_target("SUBEI", rid, day=day))
    await run_jobs(client.server.app)
    await _no_dead_jobs()
    assert [m["data"]["phrase3"] for m in await world.messages("demo_dongguan_doctor")] == ["初审通过", "已接收"]
    for openid in ("o_n_patient", "o_n_family"):
        [notice] = await world.messages(openid)
        assert notice["template_id"] == ADMISSION
        assert notice["page"] == f"pages/referral/slip?id={rid}"
        assert notice["data"]["thing1"] == "陆*龙"
        assert notice["data"]["thing2"] == "江苏省苏北人民医院"
        assert notice["data"]["thing3"] == "心血管内科 心内科病区"
        assert notice["data"]["date4"] == f"{day.year}年{day.month}月{day.day}日"
        assert "身份证" in notice["data"]["thing5"]
        inbox = await world.inbox(openid)
        assert inbox["unread_count"] == 1
        assert inbox["items"][0]["kind"] == "admission" and inbox["items"][0]["referral_id"] == rid
        assert "陆*龙" in inbox["items"][0]["body"] and PATIENT_NAME not in inbox["items"][0]["body"]
    # ... and the day-before reminder is a timer job, due at 09:00 China time the day before.
    [eve] = [j for j in await OutboxJob.filter(kind="notify.timer") if j.payload["timer"] == "eve"]
    assert eve.state == "pending" and eve.payload["status"] == "scheduled"
    assert eve.next_attempt_at == datetime.combine(day - timedelta(days=1), time(9), CHINA_TZ)

    # Cancellation: the patient's accounts, and the target's approvers who had it booked.
    await desk.ok(await desk.post(("DONGGUAN", "doctor"), rid, "cancel", {"comment": "患者改变主意"}))
    await run_jobs(client.server.app)
    for openid in ("o_n_patient", "o_n_family"):
        assert [m["data"].get("phrase3") for m in await world.messages(openid)] == [None, "已取消"]
    cancelled = (await world.messages("demo_subei_approver"))[-1]
    assert cancelled["template_id"] == PROGRESS and cancelled["data"]["phrase3"] == "已取消"
    await _no_dead_jobs()

    # Nobody's full name went anywhere; every message is in its recipient's inbox too.
    for account in await WeChatAccount.all():
        for message in await sandbox_messages(client, account.openid, "subscribe"):
            assert PATIENT_NAME not in str(message["data"])
        sent = len(await sandbox_messages(client, account.openid, "subscribe"))
        assert await InboxMessage.filter(account_id=account.id).count() >= sent


async def test_the_patient_is_told_when_the_loop_closes(client):
    world, patient_id = await cast(client)
    body = await world.desk.drive(Status.COMPLETED, patient_id=patient_id)
    await run_jobs(client.server.app)
    await _no_dead_jobs()
    for openid in ("o_n_patient", "o_n_family"):
        # The satisfaction survey's invitation follows it (tests/test_surveys.py): the last about the referral.
        done = [m for m in await world.messages(openid) if m["page"].startswith("pages/referral/")][-1]
        assert done["template_id"] == PROGRESS and done["page"] == f"pages/referral/detail?id={body['id']}"
        assert (done["data"]["phrase3"], done["data"]["thing4"]) == ("已完成", "苏北医院")
        assert done["data"]["thing5"] == "出院小结已交转诊医生，请按医嘱随访"
        latest = next(m for m in (await world.inbox(openid))["items"] if m["title"] != "邀请您评价本次转诊服务")
        assert latest["referral_id"] == body["id"] and "已完成" in latest["body"]


async def test_rejection_and_redirect(client):
    world, patient_id = await cast(client)
    desk = world.desk
    body = await desk.ok(await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD", submit=True), 201)
    rid = body["id"]
    await desk.ok(await desk.post(("DONGGUAN", "approver"), rid, "approve"))
    await run_jobs(client.server.app)

    # Redirect: BAOYING's approvers are next, the doctor and the patient are told where it went.
    baoying = await institution("BAOYING")
    department = (await baoying.departments.all())[0]
    await desk.ok(await desk.post(("SUBEI", "approver"), rid, "redirect",
                                  {"institution_id": str(baoying.public_id), "department_id": str(department.public_id),
                                   "comment": "本院床位已满"}))
    await run_jobs(client.server.app)
    [todo] = await world.messages("demo_baoying_approver")
    assert todo["template_id"] == APPROVAL and todo["data"]["thing3"] == "来自 东关社区"
    redirected = (await world.messages("demo_dongguan_doctor"))[-1]
    assert redirected["data"]["phrase3"] == "已改转" and "宝应县人民医院" in redirected["data"]["thing5"]
    [patient_notice] = await world.messages("o_n_patient")
    assert patient_notice["data"]["phrase3"] == "已改转" and patient_notice["data"]["thing4"] == "宝应县人民医院"

    # Rejection: the doctor learns why; the patient is not told by us (their doctor talks to them).
    await desk.ok(await desk.post(("BAOYING", "approver"), rid, "reject",
                                  {"reason_code": "other",
                                   "comment": "需要先完善冠脉CTA检查并携带近三个月全部化验结果后再转诊"}))
    await run_jobs(client.server.app)
    rejected = (await world.messages("demo_dongguan_doctor"))[-1]
    assert rejected["data"]["phrase3"] == "已拒绝" and rejected["data"]["thing4"] == "宝应县人民医院"
    assert rejected["data"]["thing5"].startswith("其他原因：需要先完善") and rejected["data"]["thing5"].endswith("…")
    assert len(rejected["data"]["thing5"]) == 20
    assert len(await world.messages("o_n_patient")) == 1
    inbox = await world.inbox("o_n_patient")
    assert [m["kind"] for m in inbox["items"]] == ["referral_progress"]
    await _no_dead_jobs()


async def test_a_stale_todo_is_not_sent_and_events_are_handled_once(client):
    world, patient_id = await cast(client)
    desk = world.desk
    body = await desk.ok(await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD", submit=True), 201)
    # Approved before the submit's notification job ran: nobody is asked to approve what is already approved.
    await desk.ok(await desk.post(("DONGGUAN", "approver"), body["id"], "approve"))
    await run_jobs(client.server.app)
    assert await world.messages("o_n_approver2") == []
    assert len(await world.messages("demo_subei_approver")) == 1
    # The same event job written again (a retry, a second dispatcher) sends nothing new.
    referral = await Referral.get(public_id=body["id"])
    await OutboxJob.filter(kind="notify.referral_event").update(state="pending")
    await OutboxJob.filter(kind="notify.send").update(state="pending")
    await run_jobs(client.server.app)
    assert len(await world.messages("demo_subei_approver")) == 1
    assert await InboxMessage.filter(referral_id=referral.id).count() == 2  # SUBEI approver + doctor


async def test_a_new_admission_date_reaches_the_patient_and_moves_the_reminder(client):
    world, patient_id = await cast(client)
    desk = world.desk
    rid = (await desk.ok(await desk.create("DONGGUAN", patient_id, "SUBEI", "CARD", submit=True), 201))["id"]
    await desk.ok(await desk.post(("DONGGUAN", "approver"), rid, "approve"))
    day, later = tomorrow() + timedelta(days=2), tomorrow() + timedelta(days=5)
    await desk.publish_beds("SUBEI", "CARD", day, 1)
    await desk.publish_beds("SUBEI", "CARD", later, 1)
    await desk.ok(await desk.approve_target("SUBEI", rid, day=day))
    await run_jobs(client.server.app)
    await desk.ok(await desk.post(("SUBEI", "approver"), rid, "reschedule", {"admission": {"date": later.isoformat()}}))
    await run_jobs(client.server.app)
    await _no_dead_jobs()

    for openid in ("o_n_patient", "o_n_family"):
        first, moved = await world.messages(openid)
        assert first["data"]["date4"] == f"{day.year}年{day.month}月{day.day}日"
        assert moved["template_id"] == ADMISSION
        assert moved["data"]["date4"] == f"{later.year}年{later.month}月{later.day}日"
        assert moved["data"]["thing5"].startswith("已改期")
        newest = (await world.inbox(openid))["items"][0]
        assert newest["title"] == "入院日期已调整" and f"原定 {day.year}年{day.month}月{day.day}日" in newest["body"]
    doctor = (await world.messages("demo_dongguan_doctor"))[-1]
    assert doctor["data"]["phrase3"] == "已改期" and doctor["data"]["thing5"].endswith(f"{later.month}月{later.day}日")

    # Two day-before timers exist; only the one for the new date says anything.
    eves = sorted(j.next_attempt_at for j in await OutboxJob.filter(kind="notify.timer")
                  if j.payload["timer"] == "eve")
    assert eves == [datetime.combine(d - timedelta(days=1), time(9), CHINA_TZ) for d in (day, later)]
    await run_jobs(client.server.app, now=datetime.combine(later, time(8), CHINA_TZ))
    kinds = [m["kind"] for m in (await world.inbox("o_n_patient"))["items"]]
    assert kinds == ["admission_eve", "admission", "admission"]


async def test_a_referrer_who_left_is_told_nothing_more(client):
    desk = await Desk.open(client)
    doctor_account = await WeChatAccount.get(openid=demo_openid("DONGGUAN", "doctor"))
    app = client.server.app
    first, second = await desk.drive(Status.PENDING_TARGET), await desk.drive(Status.PENDING_TARGET)
    await run_jobs(app)

    async def told_of_rejection(referral: dict) -> int:
        """Reject at the target; how many inbox messages that added for the doctor."""
        before = await InboxMessage.filter(account_id=doctor_account.id).count()
        await desk.ok(await desk.post(("SUBEI", "approver"), referral["id"], "reject",
                                      {"reason_code": "no_beds", "comment": "本周床位已满"}))
        await run_jobs(app)
        return await InboxMessage.filter(account_id=doctor_account.id).count() - before

    assert await told_of_rejection(first) == 1
    row = await Referral.get(public_id=second["id"])
    assert await referrer_accounts(row) == [doctor_account.id]
    await Staff.filter(id=doctor_account.staff_id).update(is_active=False)  # type: ignore[attr-defined]
    assert await referrer_accounts(row) == []
    assert await told_of_rejection(second) == 0
