"""The console's pages over HTTP, each against what the API says afterwards: the admission desk's verdicts
(checked in, already checked in, forged, expired, another hospital's slip), arrivals and no-shows; the admin's
staff, departments, policy, beds, jobs and audit pages, scoped to the admin's institution."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from tortoise.transactions import in_transaction

from models import AuditEvent, Consultation, Department, OutboxJob, Referral, Slip, Staff
from referrals.state_machine import Status
from security import audit
from security.masking import mask_name
from slips.noshow import expire_if_due
from stats.history import generate
from tests.console_support import console_login, csrf_of, seed_baselines
from tests.consult_support import QUESTION, request_consultation, scanned_patient
from tests.consult_support import act as consult_act
from tests.referral_support import Desk, department, institution, tomorrow
from timeutil import china_today

RESULT_CODE = 'id="scan-result" role="alert" data-code="'


def verdict(html: str) -> str:
    return html.split(RESULT_CODE, 1)[1].split('"', 1)[0]


async def scan(client, token: str, slip: str) -> str:
    resp = await client.post("/console/desk/check-in", data={"csrf_token": token, "token": slip})
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def slip_token(desk: Desk, code: str, referral_id: str) -> str:
    resp = await desk.get((code, "admission_clerk"), f"/api/v1/referrals/{referral_id}/slip")
    return (await desk.ok(resp))["token"]


async def test_the_desk_checks_in_once_and_says_why_it_refuses(client):
    desk = await Desk.open(client)
    today = await desk.drive(Status.SCHEDULED, source="DONGGUAN", target="SUBEI", day=china_today())
    token = await slip_token(desk, "SUBEI", today["id"])
    csrf = await console_login(client, "SUBEI", "admission_clerk")
    page = await (await client.get(f"/console/referrals/{today['id']}")).text()
    assert form_ids(page) == set() and "入院登记请在“住院处”页面扫描" in page  # the desk does the check-in

    page = await (await client.get("/console/desk")).text()
    assert today["patient"]["name"] in page and "今日预约入院" in page

    html = await scan(client, csrf, f"  {token}\n")  # a scanner's trailing newline is harmless
    assert verdict(html) == "CHECKED_IN" and "入院登记成功" in html and "心血管内科" in html
    assert (await desk.detail(("SUBEI", "admission_clerk"), today["id"]))["status"] == "admitted"

    html = await scan(client, csrf, token)
    assert verdict(html) == "SLIP_ALREADY_CHECKED_IN" and "已办理过入院" in html
    clerk = (await desk.session("SUBEI", "admission_clerk"))["account"]["staff"]["name"]
    assert clerk in html and today["patient"]["name"] in html

    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    assert verdict(await scan(client, csrf, forged)) == "SLIP_BAD_SIGNATURE"
    assert "伪造的凭条" in await scan(client, csrf, forged)
    assert verdict(await scan(client, csrf, "hello")) == "SLIP_MALFORMED"
    assert verdict(await scan(client, csrf, "x" * 5000)) == "SLIP_MALFORMED"
    assert verdict(await scan(client, csrf, "")) == "EMPTY"

    elsewhere = await desk.drive(Status.SCHEDULED, source="DONGGUAN", target="GAOYOU", dept="MED")
    html = await scan(client, csrf, await slip_token(desk, "GAOYOU", elsewhere["id"]))
    assert verdict(html) == "SLIP_OTHER_INSTITUTION" and "非本院凭条" in html and "高邮市人民医院" in html

    # A slip whose patient never came: expired, and listed with the past days' no-shows.
    late = await desk.drive(Status.SCHEDULED, source="DONGGUAN", target="SUBEI")
    late_token = await slip_token(desk, "SUBEI", late["id"])
    referral = await Referral.get(public_id=late["id"])
    slip = await Slip.get(referral_id=referral.id)
    await Slip.filter(id=slip.id).update(expires_at=slip.created_at)
    assert await expire_if_due(slip.id) == "expired"  # what the no-show timer runs
    html = await scan(client, csrf, late_token)
    assert verdict(html) == "SLIP_EXPIRED" and "凭条已过期" in html
    await Referral.filter(id=referral.id).update(admission_date=china_today() - timedelta(days=2))
    page = await (await client.get("/console/desk")).text()
    no_shows = page.split("天未到院", 1)[1]
    assert slip.code in no_shows and "已过期" in no_shows


async def test_only_admission_clerks_use_the_desk(client):
    desk = await Desk.open(client)
    referral = await desk.drive(Status.SCHEDULED, source="DONGGUAN", target="SUBEI", day=china_today())
    token = await slip_token(desk, "SUBEI", referral["id"])
    csrf = await console_login(client, "SUBEI", "approver")
    assert (await client.get("/console/desk")).status == 403
    resp = await client.post("/console/desk/check-in", data={"csrf_token": csrf, "token": token})
    assert resp.status == 403
    assert (await desk.detail(("SUBEI", "approver"), referral["id"]))["status"] == "scheduled"


async def test_admin_pages_change_what_the_api_reads(client):
    desk = await Desk.open(client)
    csrf = await console_login(client, "SUBEI", "admin")
    admin = ("SUBEI", "admin")

    resp = await client.post("/console/admin/policy", data={
        "csrf_token": csrf, "source_approval_up": "1", "approver_roles": ["approver", "expert"],
        "deadline_routine": "24", "deadline_urgent": "6", "deadline_emergency": "1", "slip_grace_hours": "12",
        "what_to_bring": "身份证\n医保卡"}, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    policy = await desk.ok(await desk.get(admin, "/api/v1/admin/policy"))
    assert policy["source_approval_up"] and not policy["source_approval_down"]
    assert policy["approver_roles"] == ["approver", "expert"] and policy["deadline_hours"]["urgent"] == 6
    assert policy["what_to_bring"] == "身份证 医保卡" and policy["slip_grace_hours"] == 12
    bad = await client.post("/console/admin/policy", data={
        "csrf_token": csrf, "approver_roles": "approver", "deadline_routine": "0", "deadline_urgent": "6",
        "deadline_emergency": "1", "slip_grace_hours": "12"})
    assert bad.status == 422 and "时限" in await bad.text()

    resp = await client.post("/console/admin/departments", data={
        "csrf_token": csrf, "code": "GERI", "name": "老年医学科", "ward": "老年病区", "phone": ""})
    assert resp.status == 200 and "已新增科室" in await resp.text()
    geri = await Department.get(code="GERI")
    resp = await client.post(f"/console/admin/departments/{geri.public_id}", data={
        "csrf_token": csrf, "name": "老年医学科", "ward": "老年二病区", "phone": "0514-1"})
    assert resp.status == 200
    await geri.refresh_from_db()
    assert geri.ward == "老年二病区" and not geri.is_active  # unticked: switched off

    doctor = await Staff.get(institution__code="SUBEI", name="王建国")
    resp = await client.post(f"/console/admin/staff/{doctor.public_id}", data={
        "csrf_token": csrf, "roles": ["doctor", "expert"], "department_id": str(geri.public_id), "title": "副主任医师"})
    assert resp.status == 200
    listed = await desk.ok(await desk.get(admin, "/api/v1/admin/staff"))
    row = next(s for s in listed["items"] if s["id"] == str(doctor.public_id))
    assert row["roles"] == ["doctor", "expert"] and row["title"] == "副主任医师" and row["department"]["code"] == "GERI"
    me = await Staff.get(institution__code="SUBEI", name="王海燕")
    resp = await client.post(f"/console/admin/staff/{me.public_id}", data={
        "csrf_token": csrf, "roles": "admin", "is_active": "false"})
    assert resp.status == 409 and "不能停用自己的账号" in await resp.text()

    cardiology = await department("SUBEI", "CARD")
    day = tomorrow()
    resp = await client.post("/console/admin/beds", data={
        "csrf_token": csrf, "department_id": str(cardiology.public_id), "from": day.isoformat(), "capacity": "2"})
    assert resp.status == 200 and "已发布" in await resp.text()
    assert (await desk.beds("SUBEI", "CARD", day))["capacity"] == 2
    referral = await desk.drive(Status.SCHEDULED, source="DONGGUAN", target="SUBEI", day=day)
    assert referral["status"] == "scheduled"
    page = await (await client.get(f"/console/admin/beds?department={cardiology.public_id}&month={day:%Y-%m}")).text()
    assert f'data-date="{day.isoformat()}" data-capacity="2" data-booked="1"' in page
    resp = await client.post("/console/admin/beds", data={
        "csrf_token": csrf, "department_id": str(cardiology.public_id), "from": day.isoformat(), "capacity": "0"})
    assert resp.status == 409 and "不能少于已预约数" in await resp.text()
    other = await department("GAOYOU", "MED")
    resp = await client.post("/console/admin/beds", data={
        "csrf_token": csrf, "department_id": str(other.public_id), "from": day.isoformat(), "capacity": "9"})
    assert resp.status == 404

    record = await Referral.get(public_id=referral["id"])
    job = await OutboxJob.get(dedupe_key=f"his-admit:{record.id}")
    await OutboxJob.filter(id=job.id).update(state="dead", attempts=3, last_error="HIS 拒绝：科室代码无效")
    page = await (await client.get("/console/admin/jobs")).text()
    assert "HIS 拒绝：科室代码无效" in page and record.code in page
    resp = await client.post(f"/console/admin/jobs/{job.id}/retry", data={"csrf_token": csrf})
    assert resp.status == 200 and "已重新排队" in await resp.text()
    assert (await OutboxJob.get(id=job.id)).state == "pending"

    subei, gaoyou = await institution("SUBEI"), await institution("GAOYOU")
    async with in_transaction():
        await audit.record("patient.identity_read", "patient", "a" * 32, institution_id=subei.id,
                           detail={"referral": record.code})
        await audit.record("patient.scanned", "patient", "b" * 32, institution_id=gaoyou.id)
    page = await (await client.get("/console/admin/audit?action=patient.")).text()
    assert "patient.identity_read" in page and "patient.scanned" not in page  # only this institution's
    page = await (await client.get(f"/console/admin/audit?action=patient.&from={china_today() + timedelta(days=1)}"
                                   )).text()
    assert "patient.identity_read" not in page
    resp = await client.post("/console/admin/audit/verify", data={"csrf_token": await csrf_of(client, "/console/")})
    # The two reads above and the admin changes this test made through the pages (each audited).
    assert await AuditEvent.filter(action__startswith="admin.").count() >= 5
    assert f"审计日志完整：共 {await AuditEvent.all().count()} 条记录" in await resp.text()
    await AuditEvent.filter(institution_id=gaoyou.id).update(target_type="staff")
    resp = await client.post("/console/admin/audit/verify", data={"csrf_token": csrf})
    assert "审计日志已被篡改" in await resp.text()


async def test_the_statistics_page_shows_the_stats_figures_and_exports_them(client):
    desk = await Desk.open(client)
    await generate(desk.cipher, referrals=200, years=0.25)
    await seed_baselines()
    csrf = await console_login(client, "SUBEI", "admin")
    assert csrf
    page = await (await client.get("/console/stats")).text()
    charts = json.loads(page.split('<script type="application/json" id="stats-data">', 1)[1].split("</script>")[0])
    api = await desk.ok(await desk.get(("SUBEI", "admin"), "/api/v1/stats/table1"))
    assert charts["table1"]["series"][1]["data"] == [r["platform"]["mean_days"] for r in api["rows"]]
    assert charts["table1"]["series"][0]["data"] == [r["baseline"]["mean_days"] if r["baseline"] else None
                                                     for r in api["rows"]]
    waiting = await desk.ok(await desk.get(("SUBEI", "admin"), "/api/v1/stats/waiting-times"))
    assert charts["stages"]["categories"] == [r["label"] for r in waiting["items"]]
    assert "表2 满意度" in page and "转诊概况" in page and "江苏省苏北人民医院" in page

    resp = await client.get("/console/stats/export", params={"table": "table1", "format": "csv", "direction": "up"})
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in resp.headers["Content-Disposition"]
    api_csv = await desk.get(("SUBEI", "admin"), "/api/v1/stats/table1", format="csv", direction="up")
    assert await resp.read() == await api_csv.read()
    resp = await client.get("/console/stats/export", params={"table": "summary", "format": "xlsx"})
    assert resp.status == 200 and (await resp.read())[:2] == b"PK"
    assert (await client.get("/console/stats", params={"from": "2026-05-01", "to": "2026-01-01"})).status == 422

    await console_login(client, "SUBEI", "doctor")
    assert (await client.get("/console/stats")).status == 403
    await console_login(client, "SUBEI", "consortium_admin")
    page = await (await client.get("/console/stats")).text()
    assert "转诊统计 · 医联体" in page and 'id="s-inst"' in page


async def test_an_expert_accepts_and_concludes_a_consultation_from_the_console(client):
    desk = await Desk.open(client)
    patient = await scanned_patient(desk)
    asked = await desk.ok(await request_consultation(desk, patient=patient), 201)
    cid, page_path = asked["id"], f"/console/consultations/{asked['id']}"

    csrf = await console_login(client, "SUBEI", "expert")
    assert "/console/consultations" in await (await client.get("/console/")).text()  # in the navigation
    pool = await (await client.get("/console/consultations?box=pool")).text()
    assert page_path in pool and QUESTION[:20] in pool
    page = await (await client.get(page_path)).text()
    full_name = (await Consultation.get(public_id=cid)).patient_name
    assert mask_name(full_name) in page and full_name not in page  # masked as the API masks it
    assert 'action="' + page_path + '/accept"' in page and "/conclude" not in page

    # Without the CSRF token nothing happens.
    resp = await client.post(f"{page_path}/accept", data={"version": "1"})
    assert resp.status == 403 and "安全校验码" in await resp.text()
    assert (await desk.ok(await desk.get(("SUBEI", "expert"), f"/api/v1/consultations/{cid}")))["status"] == "requested"

    resp = await client.post(f"{page_path}/accept", data={"csrf_token": csrf, "version": str(asked["version"])},
                             allow_redirects=False)
    assert resp.status == 303, await resp.text()
    page = await (await client.get(page_path)).text()
    assert "会诊中" in page and "conclude-form" in page and "接诊</strong>" in page  # timeline
    version = (await desk.ok(await desk.get(("SUBEI", "expert"), f"/api/v1/consultations/{cid}")))["version"]

    bad = await client.post(f"{page_path}/conclude", data={"csrf_token": csrf, "version": str(version),
                                                           "recommendation": "nonsense", "advice": "x"})
    assert bad.status == 422 and "会诊意见类型" in await bad.text()
    cardiology = (await department("SUBEI", "CARD")).public_id
    resp = await client.post(f"{page_path}/conclude", data={
        "csrf_token": csrf, "version": str(version), "recommendation": "refer_up",
        "advice": "建议上转行冠脉造影", "suggested_department_id": str(cardiology)})
    assert resp.status == 200 and "已出具会诊意见" in await resp.text()

    # The requester reads the opinion, in the console and through the API alike.
    api = await desk.ok(await desk.get(("DONGGUAN", "doctor"), f"/api/v1/consultations/{cid}"))
    assert api["status"] == "concluded" and api["opinion"]["advice"] == "建议上转行冠脉造影"
    await console_login(client, "DONGGUAN", "doctor")
    outgoing = await (await client.get("/console/consultations")).text()
    assert page_path in outgoing and "已出具会诊意见" in outgoing
    page = await (await client.get(page_path)).text()
    assert 'id="opinion"' in page and "建议上转行冠脉造影" in page and "建议上转" in page and "心血管内科" in page
    assert "出具会诊意见</strong>" in page and "可执行的操作" in page and "/cancel" not in page

    # Another institution's doctor does not even learn that it exists.
    await console_login(client, "GAOYOU", "doctor")
    assert (await client.get(page_path)).status == 404
    assert page_path not in await (await client.get("/console/consultations")).text()


async def test_a_consultation_is_declined_with_a_coded_reason_or_cancelled_from_the_console(client):
    desk = await Desk.open(client)
    declined = await desk.ok(await request_consultation(desk), 201)
    cancelled = await desk.ok(await request_consultation(desk), 201)

    csrf = await console_login(client, "SUBEI", "expert")
    path = f"/console/consultations/{declined['id']}"
    assert 'name="reason_code"' in await (await client.get(path)).text()
    resp = await client.post(f"{path}/decline", data={"csrf_token": csrf, "reason_code": "other", "comment": ""})
    assert resp.status == 422 and "请填写说明" in await resp.text()  # the command's rule, not a copy of it
    resp = await client.post(f"{path}/decline", data={"csrf_token": csrf, "reason_code": "out_of_scope",
                                                      "comment": "建议改约神经内科"})
    page = await resp.text()
    assert resp.status == 200 and "已婉拒" in page and "不属于本专业范围" in page and "建议改约神经内科" in page

    csrf = await console_login(client, "DONGGUAN", "doctor")
    path = f"/console/consultations/{cancelled['id']}"
    assert 'action="' + path + '/cancel"' in await (await client.get(path)).text()
    resp = await client.post(f"{path}/cancel", data={"csrf_token": csrf, "version": "1", "comment": "患者已好转"})
    assert resp.status == 200 and "已取消" in await resp.text()
    body = await desk.ok(await desk.get(("DONGGUAN", "doctor"), f"/api/v1/consultations/{cancelled['id']}"))
    assert body["status"] == "cancelled" and body["timeline"][-1]["comment"] == "患者已好转"


def form_ids(html: str) -> set[str]:
    """The action forms a detail page offers, by their ids ("approve-form" → "approve")."""
    return set(re.findall(r'<form class="stack" method="post" action="[^"]+" id="([a-z_]+)-form"', html))


def flash(html: str) -> str:
    return html.split('<p class="flash bad" role="status">', 1)[1].split("</p>", 1)[0]


async def test_a_target_approver_redirects_a_referral_from_the_console(client):
    desk = await Desk.open(client)
    referral = await desk.drive(Status.PENDING_TARGET, source="DONGGUAN", target="SUBEI")
    rid, path = referral["id"], f"/console/referrals/{referral['id']}"
    gaoyou_med = f"{(await institution('GAOYOU')).public_id}:{(await department('GAOYOU', 'MED')).public_id}"

    await console_login(client, "DONGGUAN", "doctor")  # the referrer may cancel, not redirect
    assert form_ids(await (await client.get(path)).text()) == {"cancel"}
    await console_login(client, "SUBEI", "doctor")  # the target's doctor takes no step at all
    assert form_ids(await (await client.get(path)).text()) == set()

    csrf = await console_login(client, "SUBEI", "approver")
    page = await (await client.get(path)).text()
    assert form_ids(page) == {"approve", "reject", "redirect"}
    choices = page.split('id="d-target"', 1)[1].split("</select>", 1)[0]
    assert f'value="{gaoyou_med}"' in choices and "高邮市人民医院 / 内科" in choices
    assert "江苏省苏北人民医院" not in choices and "东关街道" not in choices  # neither end of the referral
    assert 'for="d-target"' in page and 'for="d-comment"' in page

    resp = await client.post(f"{path}/redirect", data={"version": str(referral["version"]), "target": gaoyou_med})
    assert resp.status == 403 and "安全校验码" in await resp.text()
    resp = await client.post(f"{path}/redirect", data={"csrf_token": csrf, "version": str(referral["version"] - 1),
                                                       "target": gaoyou_med})
    page = await resp.text()
    assert resp.status == 409 and "转诊单已被他人处理" in flash(page)  # the command's words, on the detail page
    assert referral["code"] in page and "redirect-form" in page
    resp = await client.post(f"{path}/redirect", data={"csrf_token": csrf, "version": str(referral["version"]),
                                                       "target": ""})
    assert resp.status == 422 and "提交的内容有误" in flash(await resp.text())

    resp = await client.post(f"{path}/redirect", data={"csrf_token": csrf, "version": str(referral["version"]),
                                                       "target": gaoyou_med, "comment": "本院床位已满，改转县医院"},
                             allow_redirects=False)
    assert resp.status == 303, await resp.text()
    body = await desk.detail(("GAOYOU", "approver"), rid)
    assert body["status"] == "pending_target" and body["target_institution"]["code"] == "GAOYOU"
    assert body["target_department"]["code"] == "MED" and body["timeline"][-1]["action"] == "redirect"
    assert body["timeline"][-1]["comment"] == "本院床位已满，改转县医院"
    page = await (await client.get(path)).text()  # SUBEI still reads what it decided, and has no step left
    assert "改转其他机构</strong>" in page and form_ids(page) == set()
    await console_login(client, "GAOYOU", "approver")  # now the new target decides
    assert form_ids(await (await client.get(path)).text()) == {"approve", "reject", "redirect"}


async def test_the_referring_doctor_edits_a_draft_from_the_console(client):
    desk = await Desk.open(client)
    draft = await desk.drive(Status.DRAFT, source="DONGGUAN", target="SUBEI")
    rid, path = draft["id"], f"/console/referrals/{draft['id']}"
    await console_login(client, "DONGGUAN", "approver")  # sees the draft, but only its author edits it
    page = await (await client.get(path)).text()
    assert draft["code"] in page and form_ids(page) == set()

    csrf = await console_login(client, "DONGGUAN", "doctor")
    page = await (await client.get(path)).text()
    assert form_ids(page) == {"edit", "submit", "cancel"}
    assert 'value="反复胸闷胸痛1周，加重1天"' in page and "I20.0 不稳定型心绞痛" in page  # pre-filled
    fields = {"csrf_token": csrf, "version": str(draft["version"]), "urgency": "urgent",
              "target": f"{(await institution('GAOYOU')).public_id}:{(await department('GAOYOU', 'MED')).public_id}",
              "contact_phone": "13900001111", "diagnoses": "I20.0 不稳定型心绞痛\r\nI10 高血压",
              "chief_complaint": "胸痛2天", "present_illness": "", "past_history": "", "allergies": "",
              "treatment": "", "recent_results": "", "referral_reason": "县医院可行冠脉CT", "precautions": ""}

    resp = await client.post(f"{path}/edit", data=fields | {"diagnoses": "XYZ 不存在的诊断"})
    assert resp.status == 422 and "ICD-10 编码格式不正确" in flash(await resp.text())
    resp = await client.post(f"{path}/edit", data=fields, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    body = await desk.detail(("DONGGUAN", "doctor"), rid)
    assert body["urgency"] == "urgent" and body["target_institution"]["code"] == "GAOYOU"
    assert body["clinical"]["chief_complaint"] == "胸痛2天"
    assert body["clinical"]["referral_reason"] == "县医院可行冠脉CT"
    assert [d["code"] for d in body["clinical"]["diagnoses"]] == ["I20.0", "I10"]
    assert body["contact_phone"].endswith("1111") and body["timeline"][-1]["action"] == "edit"

    resp = await client.post(f"{path}/edit", data=fields)  # the form as it was before the edit: a stale version
    assert resp.status == 409 and "转诊单已被他人处理" in flash(await resp.text())
    resp = await client.post(f"{path}/edit", data=fields | {"version": str(body["version"]), "contact_phone": "",
                                                            "target": "", "chief_complaint": "胸痛3天"},
                             allow_redirects=False)
    assert resp.status == 303
    again = await desk.detail(("DONGGUAN", "doctor"), rid)  # a blank phone and target leave both as they were
    assert again["contact_phone"] == body["contact_phone"] and again["target_institution"]["code"] == "GAOYOU"
    assert again["clinical"]["chief_complaint"] == "胸痛3天"

    resp = await client.post(f"{path}/submit", data={"csrf_token": csrf, "version": str(again["version"])},
                             allow_redirects=False)
    assert resp.status == 303
    page = await (await client.get(path)).text()
    assert "edit-form" not in page and form_ids(page) == {"cancel"}  # submitted: no longer a draft to edit


async def test_a_rejected_referral_is_edited_and_sent_again_from_the_console(client):
    desk = await Desk.open(client)
    rejected = await desk.drive(Status.REJECTED, source="DONGGUAN", target="SUBEI")
    path = f"/console/referrals/{rejected['id']}"
    await console_login(client, "SUBEI", "approver")
    assert "resubmit-form" not in await (await client.get(path)).text()

    csrf = await console_login(client, "DONGGUAN", "doctor")
    page = await (await client.get(path)).text()
    assert form_ids(page) == {"resubmit"} and "需上级医院行冠脉造影评估" in page
    fields = {"csrf_token": csrf, "version": str(rejected["version"]), "diagnoses": "I20.0 不稳定型心绞痛",
              "chief_complaint": "反复胸闷胸痛1周", "referral_reason": "补充心电图后再次申请", "submit": "true"}
    resp = await client.post(f"{path}/resubmit", data=fields | {"chief_complaint": ""})
    assert resp.status == 422 and "提交前请填写：主诉" in flash(await resp.text())
    resp = await client.post(f"{path}/resubmit", data=fields, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    new_path = resp.headers["Location"].split("?", 1)[0]
    new = await desk.detail(("DONGGUAN", "doctor"), new_path.rsplit("/", 1)[1])
    assert new["previous_id"] == rejected["id"] and new["status"] in ("pending_source", "pending_target")
    assert new["clinical"]["referral_reason"] == "补充心电图后再次申请"
    assert new["code"] in await (await client.get(resp.headers["Location"])).text()
    # The same form sent twice (a double click) makes no second referral.
    resp = await client.post(f"{path}/resubmit", data=fields)
    assert resp.status == 409 and "转诊单已被他人处理" in flash(await resp.text())
    assert await Referral.filter(previous__public_id=rejected["id"]).count() == 1


async def test_experts_are_invited_to_an_accepted_consultation_from_the_console(client):
    desk = await Desk.open(client)
    asked = await desk.ok(await request_consultation(desk), 201)
    cid, path = asked["id"], f"/console/consultations/{asked['id']}"
    await console_login(client, "DONGGUAN", "doctor")
    assert form_ids(await (await client.get(path)).text()) == {"cancel"}  # nobody to invite before an expert accepts

    accepted = await desk.ok(await consult_act(desk, ("SUBEI", "expert"), cid, "accept"))
    gaoyou_expert = await Staff.get(account__openid="demo_gaoyou_expert")
    baoying_expert = await Staff.get(account__openid="demo_baoying_expert")
    csrf = await console_login(client, "SUBEI", "expert")
    page = await (await client.get(path)).text()
    assert form_ids(page) == {"invite", "conclude"}
    offered = page.split('id="i-experts"', 1)[1].split("</select>", 1)[0]
    subei_expert = await Staff.get(account__openid="demo_subei_expert")
    assert str(gaoyou_expert.public_id) in offered and "高邮市人民医院 / 内科" in offered
    assert str(subei_expert.public_id) not in offered  # already taking part
    assert 'for="i-experts"' in page

    invite = {"version": str(accepted["version"]), "expert_ids": [str(gaoyou_expert.public_id)]}
    resp = await client.post(f"{path}/invite", data=invite)
    assert resp.status == 403 and "安全校验码" in await resp.text()
    resp = await client.post(f"{path}/invite", data={"csrf_token": csrf, "version": str(accepted["version"])})
    assert resp.status == 422 and "提交的内容有误" in flash(await resp.text())
    resp = await client.post(f"{path}/invite", data=invite | {"csrf_token": csrf, "version": "1"})
    assert resp.status == 409 and flash(await resp.text())  # accepted since: the version moved on

    resp = await client.post(f"{path}/invite", allow_redirects=False, data={
        "csrf_token": csrf, "version": str(accepted["version"]),
        "expert_ids": [str(gaoyou_expert.public_id), str(baoying_expert.public_id)]})
    assert resp.status == 303, await resp.text()
    body = await desk.ok(await desk.get(("GAOYOU", "expert"), f"/api/v1/consultations/{cid}"))
    assert sorted(s["name"] for s in body["invited"]) == sorted([gaoyou_expert.name, baoying_expert.name])
    assert body["timeline"][-1]["action"] == "invite"
    page = await (await client.get(path)).text()
    offered = page.split('id="i-experts"', 1)[1].split("</select>", 1)[0]
    assert str(gaoyou_expert.public_id) not in offered and "邀请专家（多学科会诊）</strong>" in page  # in the timeline

    csrf = await console_login(client, "DONGGUAN", "doctor")  # the requester may invite too, as the API allows
    assert form_ids(await (await client.get(path)).text()) == {"invite", "cancel"}
