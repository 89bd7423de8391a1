"""`python app.py demo`: the paper's referral loop, walked over HTTP against the running platform as the demo
staff, each step printed in Chinese with the timeline, so that a newcomer sees the loop work in a minute.

DONGGUAN's doctor logs in and scans an inpatient from DONGGUAN's HIS (simulator); asks SUBEI's cardiology
experts for a cloud consultation with the HIS pre-fill; SUBEI's expert accepts, asks a question in the
consultation's chat and concludes "refer up"; the doctor turns the opinion into a referral in one step (pre-filled
and linked); DONGGUAN's approver approves; SUBEI's approver publishes a
reserved bed if none is free and books it; then the admission slip: its QR code is saved as a PNG and SUBEI's
admission clerk checks the patient in, which gives the waiting time (submit → admitted).
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import aiohttp

from directory.seed import demo_openid
from models.people import ROLE_NAMES
from settings import Settings
from slips.demo import SlipDemoError, demo_slip, summary_lines
from timeutil import china_time, china_today

SOURCE = "DONGGUAN"
TARGET = "SUBEI"
# Up-referrals the paper's flow shows: a cardiac or a stroke patient, to the matching SUBEI department.
DEPARTMENTS = {"心血管内科": ("I20", "I21", "I22", "I24", "I25"), "神经内科": ("I61", "I63", "G45")}
REASON = "基层医疗机构不具备进一步诊疗条件，需转上级医院专科诊治"
PRECAUTIONS = "转运途中注意监测生命体征"
HIS_WAIT = 5.0  # seconds the demo waits for the HIS admission job before moving on
ROLE_LABELS = {str(role): name for role, name in ROLE_NAMES.items()} | {"system": "系统"}


class DemoError(RuntimeError):
    """A step failed; the message says which, in Chinese."""


def base_url(settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    # A server listening on every interface is reached on loopback.
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


def _clock(at: str) -> str:
    return china_time(datetime.fromisoformat(at)).strftime("%m-%d %H:%M:%S")


class Walk:
    """The demo's HTTP client: every call names its step, so a failure says where the loop broke."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.step_no = 0
        self.shown_seq = 0

    def step(self, title: str) -> None:
        self.step_no += 1
        print(f"\n【第 {self.step_no} 步】{title}")

    @staticmethod
    def say(line: str) -> None:
        print(f"  {line}")

    async def call(self, what: str, method: str, path: str, *, session: dict | None = None,
                   body: dict | None = None, ok: tuple[int, ...] = (200, 201)) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {session['access_token']}"} if session else {}
        if method == "POST" and path.startswith("/api/"):
            headers["Idempotency-Key"] = f"demo-{uuid.uuid4().hex}"
        async with self.http.request(method, self.base + path, json=body, headers=headers) as resp:
            data = await resp.json(content_type=None) if resp.content_length != 0 else {}
            status = resp.status
        if status not in ok:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise DemoError(f"{what}失败（HTTP {status} {error.get('code', '')}）：{error.get('message', '')}")
        return status, data

    async def login(self, code: str, role: str) -> dict:
        """wx.login in the sandbox, then the platform's wx-login; prints who logged in."""
        _, minted = await self.call("获取微信登录凭证", "POST", "/wechat-sandbox/sandbox/login-code",
                                    body={"openid": demo_openid(code, role)})
        _, session = await self.call("微信登录", "POST", "/api/v1/auth/wx-login", body={"code": minted["code"]})
        staff = session["account"].get("staff")
        if not staff:
            raise DemoError(f"演示账号 {demo_openid(code, role)} 未绑定工作人员，请先运行 python app.py seed")
        self.say(f"{staff['institution']['name']} {staff['name']}（{'、'.join(staff['role_names'])}）已通过微信登录")
        return session

    def timeline(self, referral: dict) -> None:
        """Print the events not shown yet."""
        for event in referral["timeline"]:
            if event["seq"] <= self.shown_seq:
                continue
            actor = event["actor"]
            who = f"{actor['institution']} {actor['name']}（{ROLE_LABELS.get(actor['role'], actor['role'])}）"
            line = (f"  {event['seq']:>2}. {_clock(event['at'])}  {who}  "
                    f"{event['action_name']} → {event['to_status_name']}")
            if event.get("comment"):
                line += f"  “{event['comment']}”"
            print(line)
            self.shown_seq = event["seq"]


def _pick_patient(people: list[dict]) -> tuple[dict, str]:
    """An inpatient whose HIS diagnosis belongs to cardiology (whose expert pool the demo consults), else to
    neurology, with that department."""
    for department, prefixes in DEPARTMENTS.items():
        for person in people:
            if person.get("open_encounter") and any(d["code"].upper().startswith(prefixes)
                                                    for d in person.get("diagnoses", [])):
                return person, department
    raise DemoError(f"{SOURCE} 的 HIS 中没有心血管内科或神经内科的在院患者")


async def walk(w: Walk, slip_dir: Path) -> None:
    w.step("东关社区医生登录小程序")
    doctor = await w.login(SOURCE, "doctor")

    w.step("医生扫描患者就诊卡，平台从东关社区 HIS 调取病历预填转诊单")
    status, listing = await w.call("读取演示 HIS 患者列表", "GET", f"/his-sim/{SOURCE}/_patients", ok=(200, 404))
    if status == 404:
        raise DemoError("平台未启用 HIS 模拟器（EMBEDDED_HIS=false），演示需要演示用 HIS")
    person, department_name = _pick_patient(listing["items"])
    _, scan = await w.call("扫码识别患者", "POST", "/api/v1/scan", session=doctor, body={"content": person["mrn"]})
    patient, prefill = scan["patient"], scan["prefill"]
    department_name = (scan.get("his") or {}).get("department") or department_name
    if department_name not in DEPARTMENTS:
        department_name = _pick_patient([person])[1]
    w.say(f"扫码内容：病历号 {person['mrn']}（识别方式：{scan['resolved_by']}）")
    w.say(f"患者：{patient['name']}，{'男' if patient['gender'] == 'male' else '女'}，{patient['age']} 岁，"
          f"身份证 {patient['id_number']}")
    w.say("预填诊断：" + "；".join(f"{d['code']} {d['name']}" for d in prefill["diagnoses"]))
    w.say(f"主诉：{prefill['chief_complaint']}")

    _, page = await w.call("读取医联体机构", "GET", "/api/v1/institutions?limit=200", session=doctor)
    target = next(i for i in page["items"] if i["code"] == TARGET)
    _, page = await w.call("读取科室", "GET", f"/api/v1/institutions/{target['id']}/departments?limit=200",
                           session=doctor)
    department = next(d for d in page["items"] if d["name"] == department_name)
    consultation = await consult_first(w, doctor, patient, prefill, target, department)

    w.step(f"医生据会诊意见一键发起转诊，上转至苏北人民医院{department_name}并提交")
    body = {"consultation_id": consultation["id"], "urgency": "urgent", "submit": True,
            "clinical": {"precautions": PRECAUTIONS}}
    status, referral = await w.call("提交转诊单", "POST", "/api/v1/referrals", session=doctor, body=body,
                                    ok=(201, 409))
    if status == 409:
        if referral["error"]["code"] != "DUPLICATE_REFERRAL":
            raise DemoError(f"提交转诊单失败：{referral['error']['message']}")
        w.say(f"该患者已有未结束的转诊单 {referral['error']['detail']['code']}（此前运行过演示），确认后再次转诊")
        _, referral = await w.call("提交转诊单", "POST", "/api/v1/referrals", session=doctor,
                                   body=body | {"confirm_duplicate": True})
    rid = referral["id"]
    w.say(f"转诊单 {referral['code']}：{referral['direction_name']}，{referral['urgency_name']}，"
          f"当前状态“{referral['status_name']}”")
    w.say(f"病情和附件取自会诊 {referral['consultation']['code']}，转诊原因：{referral['clinical']['referral_reason']}")

    w.step("东关社区审批人员收到提醒，审批通过")
    if referral["status"] == "pending_source":
        approver = await w.login(SOURCE, "approver")
        _, referral = await w.call("转出机构审批", "POST", f"/api/v1/referrals/{rid}/approve", session=approver,
                                   body={"comment": "同意上转，请苏北医院接收", "version": referral["version"]})
        w.say(f"已审批通过，当前状态“{referral['status_name']}”")
    else:
        w.say(f"按{SOURCE}的转诊策略，上转无需本院审批，当前状态“{referral['status_name']}”")

    w.step("苏北医院审批人员查看预留床位，接收并预约入院")
    target_approver = await w.login(TARGET, "approver")
    day = china_today().isoformat()  # the slip is valid from its day: the demo's patient comes today
    capacity_path = f"/api/v1/departments/{department['id']}/capacity"
    _, beds = await w.call("查看预留床位", "GET", f"{capacity_path}?from={day}&to={day}", session=target_approver)
    free = beds["days"][0]
    if free["available"] == 0:
        total = free["booked"] + 5
        await w.call("发布预留床位", "PUT", capacity_path, session=target_approver,
                     body={"days": [{"date": day, "capacity": total}]})
        w.say(f"{department_name} {day} 无空余预留床位，已发布 {total} 张（已预约 {free['booked']} 张）")
    else:
        w.say(f"{department_name} {day} 尚有预留床位 {free['available']} 张")
    _, referral = await w.call("接收机构审批并预约床位", "POST", f"/api/v1/referrals/{rid}/approve",
                               session=target_approver,
                               body={"comment": "已预约床位，请按时入院", "version": referral["version"],
                                     "admission": {"date": day, "department_id": department["id"]}})
    admission = referral["admission"]
    w.say(f"已接收：{admission['date']} 入住{admission['department']['name']}（{admission['ward']}），"
          f"当前状态“{referral['status_name']}”")
    referral = await _wait_for_his(w, doctor, rid)

    print("\n  转诊时间线（转出、接收双方看到的是同一条时间线）：")
    w.timeline(referral)
    _, check = await w.call("校验时间线", "GET", f"/api/v1/referrals/{rid}/timeline/verify", session=doctor)
    w.say(f"时间线哈希链校验：{'通过' if check['valid'] else '未通过 ' + check['reason']}（{check['events']} 条记录）")

    w.step("患者持入院凭条到苏北医院住院处，扫码办理入院")
    clerk = await w.login(TARGET, "admission_clerk")
    try:
        result = await demo_slip(w.http, w.base, rid, clerk, out_dir=slip_dir)
    except SlipDemoError as exc:
        raise DemoError(str(exc)) from None
    for line in summary_lines(result):
        w.say(line)
    _, referral = await w.call("查看转诊单", "GET", f"/api/v1/referrals/{rid}", session=doctor)
    w.timeline(referral)
    print(f"\n演示完成：转诊单 {referral['code']} 当前状态“{referral['status_name']}”。"
          "转出、接收双方和患者看到的是同一条时间线。")


async def consult_first(w: Walk, doctor: dict, patient: dict, prefill: dict, target: dict,
                        department: dict) -> dict:
    """Before referring, the doctor asks the target department's experts (the paper's 云会诊); one of them
    accepts, asks a question in the consultation's chat, and concludes with a structured opinion."""
    w.step(f"东关社区医生发起云会诊，请苏北医院{department['name']}专家会诊")
    _, consultation = await w.call("发起会诊", "POST", "/api/v1/consultations", session=doctor, body={
        "patient_id": patient["id"], "target_institution_id": target["id"], "target_department_id": department["id"],
        "urgency": "urgent", "clinical": prefill, "question": "患者症状反复，是否需要上转进一步诊治？"})
    w.say(f"会诊 {consultation['code']}：{consultation['status_name']}，"
          f"发往{consultation['target_department']['name']}专家池")

    w.step("苏北医院专家接诊，在会诊群中讨论，出具会诊意见")
    expert = await w.login(TARGET, "expert")
    cid = consultation["id"]
    _, pool = await w.call("查看待接诊会诊", "GET", "/api/v1/consultations?box=pool", session=expert)
    w.say(f"专家待接诊列表中有 {len(pool['items'])} 个会诊请求")
    _, consultation = await w.call("接诊", "POST", f"/api/v1/consultations/{cid}/accept", session=expert,
                                   body={"version": consultation["version"]})
    await w.call("在会诊群中提问", "POST", f"/api/v1/conversations/{consultation['conversation_id']}/messages",
                 session=expert, body={"client_msg_id": f"demo-{uuid.uuid4().hex[:12]}", "type": "text",
                                       "text": "已阅病历和检查结果，请问患者目前生命体征是否平稳？"})
    w.say(f"{consultation['expert']['name']}已接诊，并在会诊群中向东关社区医生提问")
    _, consultation = await w.call("出具会诊意见", "POST", f"/api/v1/consultations/{cid}/conclude", session=expert,
                                   body={"version": consultation["version"], "opinion": {
                                       "recommendation": "refer_up", "advice": REASON,
                                       "suggested_department_id": department["id"]}})
    opinion = consultation["opinion"]
    w.say(f"会诊意见：{opinion['recommendation_name']}（{opinion['suggested_department']}）——{opinion['advice']}")
    return consultation


async def _wait_for_his(w: Walk, doctor: dict, rid: str) -> dict:
    """The HIS admission (patient registered, electronic admission certificate) runs as a background job
    after acceptance; wait a few seconds for it so that the timeline shows it."""
    deadline = time.monotonic() + HIS_WAIT
    while True:
        _, referral = await w.call("查看转诊单", "GET", f"/api/v1/referrals/{rid}", session=doctor)
        if referral.get("admission_certificate_no"):
            w.say(f"苏北医院 HIS 已登记患者并开具电子住院证：{referral['admission_certificate_no']}")
            return referral
        if time.monotonic() > deadline:
            w.say(f"HIS 登记在后台进行中（状态：{referral.get('his_sync')}），稍后可在转诊单中查看电子住院证号")
            return referral
        await asyncio.sleep(0.2)


async def run_demo(settings: Settings) -> int:
    base = base_url(settings)
    slip_dir = settings.data_dir / "demo"
    slip_dir.mkdir(parents=True, exist_ok=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            async with http.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=3)) as resp:
                running = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            running = False
        if not running:
            print(f"无法连接双向转诊云平台（{base}）：平台没有运行。\n"
                  "请先在另一个终端运行 make run（或 python app.py serve --migrate --seed），"
                  "再运行 python app.py demo。", file=sys.stderr)
            return 1
        print(f"双向转诊演示：{base}\n东关社区卫生服务中心 → 江苏省苏北人民医院（上转），按论文流程逐步演示。")
        try:
            await walk(Walk(http, base), slip_dir)
        except DemoError as exc:
            print(f"\n演示中断：{exc}", file=sys.stderr)
            return 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            print(f"\n演示中断：与平台的连接出错（{type(exc).__name__}），请确认平台仍在运行", file=sys.stderr)
            return 1
    return 0
